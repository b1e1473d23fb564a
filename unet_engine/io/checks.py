"""Checks shared by the volume readers and writers: file sanity, size budgets, voxel values.

Everything here raises the typed errors of :mod:`unet_engine.errors` with a message that
names the file and says what to do. Nothing here parses an image: headers are read by
nibabel / SimpleITK; the only text we look at is a few ``key: value`` lines of an NRRD or
MetaImage header, to compare the data size the header claims with the bytes on disk
before anything is allocated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unet_engine.errors import ImageDimensionError, ImageTooLargeError, InvalidVoxelDataError, UnsupportedImageError
from unet_engine.volume import Volume

#: largest expansion ratio of a deflate stream (zlib / gzip): a compressed file can never
#: hold more than about this many times its own size.
MAX_DEFLATE_RATIO = 1032

#: suffix -> format name
FORMATS: dict[str, str] = {
    ".nii": "nifti", ".nii.gz": "nifti",
    ".nrrd": "nrrd", ".nhdr": "nrrd", ".seg.nrrd": "nrrd",
    ".mha": "metaimage", ".mhd": "metaimage",
    ".png": "image2d", ".jpg": "image2d", ".jpeg": "image2d", ".tif": "image2d", ".tiff": "image2d",
    ".bmp": "image2d",
    ".dcm": "dicom", ".dicom": "dicom", ".ima": "dicom",
}
READ_SUFFIXES = tuple(FORMATS)
#: formats a mask / volume can be written to
WRITE_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd")


def full_suffix(path: str | Path) -> str:
    """The format-bearing suffix, lower case: ``.nii.gz``, ``.seg.nrrd``, ``.png``... ('' if none)."""
    name = Path(path).name.lower()
    for suffix in (".nii.gz", ".seg.nrrd"):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def image_format(path: Path) -> str:
    """Format name of an existing file: from its suffix, or DICOM for a file with the
    ``DICM`` preamble; :class:`UnsupportedImageError` otherwise."""
    suffix = full_suffix(path)
    if suffix in FORMATS:
        return FORMATS[suffix]
    if is_dicom_file(path):
        return "dicom"
    known = ", ".join(s for s in READ_SUFFIXES)
    raise UnsupportedImageError(
        f"unknown image type {suffix or '(no extension)'!r}; SegLoop reads {known} files and DICOM folders", path)


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def check_input_file(path: Path) -> None:
    """Exists, is a file, is not empty, and a ``.gz`` name really is gzip data."""
    if not path.exists():
        raise UnsupportedImageError("no such file or folder", path)
    if not path.is_file():
        raise UnsupportedImageError("not a file", path)
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedImageError("the file is empty (0 bytes); it was probably not copied or saved completely", path)
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise UnsupportedImageError("the name ends in .gz but the file is not gzip-compressed "
                                            "(damaged, or not an image)", path)


def physical_memory_bytes() -> int | None:
    """Total RAM of this computer, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_budget(path: Path, shape: tuple[int, ...], bytes_per_voxel: int, max_voxels: int) -> None:
    """Refuse (:class:`ImageTooLargeError`) before allocating when the header claims more
    than ``max_voxels`` voxels or more memory than the app may use (:func:`check_memory`)."""
    n = int(np.prod([int(s) for s in shape], dtype=object))
    if any(int(s) < 0 for s in shape):
        raise UnsupportedImageError(f"the header claims a negative image size {tuple(shape)}", path)
    if n > max_voxels:
        raise ImageTooLargeError(f"the header claims {' x '.join(str(s) for s in shape)} = {n:,} voxels, more than the "
                                 f"limit of {max_voxels:,}; the file is damaged or far larger than a scan "
                                 f"SegLoop can open (raise max_voxels if it is genuine)", path)
    check_memory(path, shape, bytes_per_voxel)


def check_stored_size(path: Path, expected_bytes: int, *, compressed: bool, available: int | None = None,
                      what: str = "voxel data") -> None:
    """Compare the data size the header claims with what the file can hold.

    ``available`` is the number of bytes on disk for the data (default: the file size).
    Uncompressed data must fit exactly; compressed data can be at most
    :data:`MAX_DEFLATE_RATIO` times smaller than what it expands to.
    """
    have = path.stat().st_size if available is None else available
    if compressed:
        if expected_bytes > have * MAX_DEFLATE_RATIO:
            raise UnsupportedImageError(f"the header claims {expected_bytes:,} bytes of {what} but {have:,} compressed "
                                        f"bytes cannot hold that much; the file is truncated or its header is damaged",
                                        path)
    elif have < expected_bytes:
        raise UnsupportedImageError(f"the file is truncated: the header claims {expected_bytes:,} bytes of {what} "
                                    f"but only {max(have, 0):,} are there (was the copy interrupted?)", path)


def _header_lines(path: Path, limit: int = 65536) -> tuple[list[str], int]:
    """Text lines of an NRRD / MetaImage header and the byte length of the header."""
    with open(path, "rb") as fh:
        head = fh.read(limit)
    lines: list[str] = []
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            if len(head) == limit:
                break
            end = len(head)  # a detached header may end without a newline
        raw = head[pos:end]
        pos = end + 1
        line = raw.decode("latin-1").rstrip("\r")
        if line == "":  # NRRD: blank line ends the header
            break
        lines.append(line)
        if line.replace(" ", "").startswith("ElementDataFile="):  # MetaImage: last header line
            break
    return lines, pos


def _header_fields(lines: list[str], fmt: str) -> dict[str, str]:
    """``field: value`` (NRRD) or ``Field = Value`` (MetaImage) lines, keys lower case."""
    if fmt == "nrrd":
        return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ":" in ln
                                                             and not ln.startswith("#") and ":=" not in ln)}
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition("=") for ln in lines if "=" in ln)}


_MET_TYPES = {f"MET_{t}{a}" for t in ("CHAR", "UCHAR", "SHORT", "USHORT", "INT", "UINT", "LONG", "ULONG",
                                      "LONG_LONG", "ULONG_LONG", "FLOAT", "DOUBLE") for a in ("", "_ARRAY")}
_NRRD_TYPES = {"signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "short", "short int",
               "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
               "unsigned short int", "uint16", "uint16_t", "int", "signed int", "int32", "int32_t", "uint",
               "unsigned int", "uint32", "uint32_t", "longlong", "long long", "long long int", "signed long long",
               "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
               "unsigned long long int", "uint64", "uint64_t", "float", "double", "block"}


def declared_type_problem(path: Path) -> str | None:
    """What is wrong with the voxel type an NRRD / MetaImage header declares (None: a type the
    format defines, none declared, or not such a header)."""
    name = path.name.lower()
    if name.endswith((".mha", ".mhd")):
        fmt, key, label, known = "mha", "elementtype", "ElementType", _MET_TYPES
    elif name.endswith((".nrrd", ".nhdr")):
        fmt, key, label, known = "nrrd", "type", "type", _NRRD_TYPES
    else:
        return None
    lines = _header_lines(path)[0]
    if fmt == "nrrd" and not (lines and lines[0].startswith("NRRD")):
        return None  # not an NRRD header at all: the reader's message says so
    value = _header_fields(lines, fmt).get(key)
    kind = "MetaImage" if fmt == "mha" else "NRRD"
    if value is not None and (value.upper() if fmt == "mha" else value.lower()) not in known:
        return f"the header's {label} {value!r} is not a voxel type {kind} defines; the header is damaged"
    return None


def check_text_header_size(path: Path, fmt: str, expected_bytes: int) -> None:
    """Data-size check for NRRD / MetaImage, from their ``encoding`` / ``CompressedData`` /
    data-file lines (the image itself is read by SimpleITK). Unknown layouts pass."""
    lines, header_len = _header_lines(path)
    fields = _header_fields(lines, fmt)
    if fmt == "nrrd":
        if "byte skip" in fields or "line skip" in fields:
            return
        encoding = fields.get("encoding", "raw").lower()
        compressed = encoding in ("gzip", "gz", "bzip2", "bz2")
        if encoding not in ("raw", "gzip", "gz"):
            return  # text / hex / bzip2: no simple bound
        data_file = fields.get("data file") or fields.get("datafile")
    else:
        compressed = fields.get("compresseddata", "false").lower() == "true"
        data_file = fields.get("elementdatafile")
        if data_file is not None and data_file.upper() == "LOCAL":
            data_file = None
        skip = fields.get("headersize", "0")
        if data_file is None and skip not in ("", "0", "-1"):
            try:
                skip_bytes = int(skip)
            except ValueError:
                skip_bytes = -2
            if not 0 <= skip_bytes <= path.stat().st_size - header_len:
                raise UnsupportedImageError(f"the header's HeaderSize = {skip} does not fit the file "
                                            f"({path.stat().st_size:,} bytes); the header is damaged", path)
        if compressed and "compresseddatasize" in fields:
            try:
                csize = int(float(fields["compresseddatasize"]))
            except ValueError:
                csize = 0
            target = path if data_file is None else path.parent / data_file
            if data_file is None or target.is_file():
                have = (target.stat().st_size - header_len) if data_file is None else target.stat().st_size
                if have < csize:
                    where = "" if data_file is None else f" in {data_file}"
                    raise UnsupportedImageError(f"the file is truncated: the header claims {csize:,} bytes of "
                                                f"compressed voxel data{where} but only {max(have, 0):,} are there",
                                                path)
    if data_file is None:
        check_stored_size(path, expected_bytes, compressed=compressed, available=path.stat().st_size - header_len)
        return
    if " " in data_file.strip() or "%" in data_file or data_file.upper().startswith("LIST"):
        return  # a list / pattern of files: let the reader check
    target = path.parent / data_file
    if not target.is_file():
        raise UnsupportedImageError(f"the header points at a data file {data_file!r} that is missing", path)
    check_stored_size(path, expected_bytes, compressed=compressed, available=target.stat().st_size,
                      what=f"voxel data in {data_file}")


# ----- voxel values ------------------------------------------------------------------------
def slabs(array: np.ndarray, max_elems: int = 1 << 22) -> Iterator[np.ndarray]:
    """Views of ``array`` along axis 0 of about ``max_elems`` elements each (bounded temps)."""
    if array.ndim == 0 or array.shape[0] == 0:
        yield array
        return
    per = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, max_elems // per)
    for start in range(0, array.shape[0], step):
        yield array[start:start + step]


def count_nonfinite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return 0
    return int(sum(int(np.count_nonzero(~np.isfinite(s))) for s in slabs(array)))


def handle_nonfinite(array: np.ndarray, path: Path | None, allow_nonfinite: bool) -> np.ndarray:
    """Refuse NaN/Inf voxels (:class:`InvalidVoxelDataError` naming their count), or with
    ``allow_nonfinite`` replace them in place with the lowest finite value."""
    bad = count_nonfinite(array)
    if bad == 0:
        return array
    total = array.size
    if bad == total:
        raise InvalidVoxelDataError(f"all {total:,} voxels are NaN or infinite; there is no image to show", path)
    if not allow_nonfinite:
        raise InvalidVoxelDataError(f"{bad:,} of {total:,} voxels are NaN or infinite; re-export the scan, or open it "
                                    f"with allow_nonfinite=True (segloop info --allow-nonfinite) to replace them "
                                    f"with the lowest finite value", path)
    low = min(float(np.min(s[np.isfinite(s)])) for s in slabs(array) if np.isfinite(s).any())
    if not array.flags.writeable:
        array = array.copy()
    for s in slabs(array):
        np.copyto(s, np.asarray(low, dtype=array.dtype), where=~np.isfinite(s))
    return array


def label_array(values: np.ndarray, path: Path | None, what: str = "label map") -> np.ndarray:
    """Validate label values and return them as uint8 (max < 256) or uint16, C-contiguous.

    Accepts bool, integer arrays and float arrays holding whole numbers (e.g. a float32
    0/1 mask); refuses NaN/Inf, fractions, negative values and values above 65535 with
    :class:`InvalidVoxelDataError`.
    """
    a = np.asarray(values)
    if a.dtype == bool:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if a.size == 0:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        bad = count_nonfinite(a)
        if bad:
            raise InvalidVoxelDataError(f"the {what} has {bad:,} NaN or infinite voxels; labels must be whole numbers",
                                        path)
        frac = 0
        example = None
        for s in slabs(a):
            nz = s != np.round(s)
            n = int(np.count_nonzero(nz))
            if n and example is None:
                example = float(s[nz].flat[0])
            frac += n
        if frac:
            raise InvalidVoxelDataError(f"the {what} has {frac:,} voxels that are not whole numbers "
                                        f"(e.g. {example:g}); it looks like a probability map or an image, not labels",
                                        path)
    elif not np.issubdtype(a.dtype, np.integer):
        raise InvalidVoxelDataError(f"the {what} holds {a.dtype} values; labels must be whole numbers", path)
    lo, hi = min(float(s.min()) for s in slabs(a)), max(float(s.max()) for s in slabs(a))
    if lo < 0:
        raise InvalidVoxelDataError(f"the {what} has negative values (down to {lo:g}); labels must be 0..65535", path)
    if hi > 65535:
        raise InvalidVoxelDataError(f"the {what} has values up to {hi:g}; labels must be 0..65535", path)
    dtype = np.uint8 if hi < 256 else np.uint16
    return np.ascontiguousarray(a, dtype=dtype) if a.dtype != dtype else np.ascontiguousarray(a)


def short_reason(exc: BaseException) -> str:
    """One readable line from a SimpleITK / nibabel exception (no C++ file names, object
    addresses or the file path, which the error message names already)."""
    if isinstance(exc, UnicodeDecodeError):
        return "the file is damaged or not an image of that type"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    pick = lines[-1] if lines else type(exc).__name__
    for ln in reversed(lines):
        if re.search(r"ERROR|Error|error|Reason|Description", ln):
            pick = ln
            break
    pick = re.sub(r"^(Description|Reason):\s*", "", pick)
    pick = re.sub(r"(sitk::ERROR|ITK ERROR|itk::ERROR):\s*", "", pick)
    pick = re.sub(r"\w+\(0x[0-9a-fA-F]+\):\s*", "", pick)
    pick = re.sub(r"\s*:?\s*\"?/[^\s\"]+\"?!?$", "", pick)  # trailing file path
    return (pick or type(exc).__name__)[:200]


def pick_time_index(n_t: int, size: tuple[int, ...], volume_index: int | None, path: str | Path) -> int | None:
    """Which volume of a 4D image to read: ``None`` for a 3D image, else ``volume_index``.

    A 4D image without ``volume_index`` is refused with a message that says how many
    volumes it holds and how to pick one; an index out of range is refused too.
    """
    if n_t <= 1:
        return None
    if volume_index is None:
        raise ImageDimensionError(
            f"this is a 4D image with {n_t} volumes ({' x '.join(map(str, size))}); SegLoop opens 3D volumes only. "
            f"Extract one volume first (e.g. `fslroi in.nii.gz out.nii.gz N 1`), or open one with "
            f"read_volume(path, volume_index=N) / `segloop info --volume N` (N = 0..{n_t - 1})", path)
    if not 0 <= volume_index < n_t:
        raise ImageDimensionError(f"volume_index {volume_index} is out of range: the image has {n_t} volumes "
                                  f"(0..{n_t - 1})", path)
    return volume_index


# ----- one validation step between reading and using a volume -------------------------------
#: largest magnitude preprocessing can hold (it works in float32)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_geometry(spacing: "tuple[float, ...]", direction: np.ndarray, path: Path | None) -> None:
    """Refuse (:class:`UnsupportedImageError`) a spacing that is not finite and positive and
    a direction that is not an orthonormal, non-degenerate 3x3 matrix."""
    sp = [float(s) for s in spacing]
    if not all(np.isfinite(s) and s > 0 for s in sp):
        raise UnsupportedImageError(f"the voxel spacing {tuple(sp)} is not finite and positive; the header's geometry "
                                    f"is damaged (re-export the scan)", path)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3, 3) or not np.all(np.isfinite(d)):
        raise UnsupportedImageError("the image orientation (direction) is not a finite 3x3 matrix; the header's "
                                    "geometry is damaged", path)
    if abs(float(np.linalg.det(d))) < 1e-6 or not np.allclose(d.T @ d, np.eye(3), atol=1e-3):
        raise UnsupportedImageError("the image orientation (direction) is degenerate or not orthonormal; the "
                                    "header's geometry is damaged (re-export the scan)", path)


def check_voxel_type(dtype: np.dtype, path: Path | None) -> None:
    """Only real numbers (bool, integers, floats; uint8 RGB) are images SegLoop can use."""
    dt = np.dtype(dtype)
    if dt.fields is not None:  # RGB24 / RGBA32 structured types
        if all(np.dtype(f[0]).kind == "u" for f in dt.fields.values()):
            return
    elif dt.kind in "biuf" and dt.itemsize <= 8:
        return
    what = "complex" if dt.kind == "c" else str(dt)
    raise InvalidVoxelDataError(f"the voxels are {what} values ({dt}); SegLoop reads real-valued images only "
                                f"(take the magnitude or the real part first)", path)


#: share of the available memory one image (plus its float32 working copy) may take
MEMORY_SHARE = 0.8


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
        return None if text in ("", "max") else int(text)
    except (OSError, ValueError):
        return None


def limit_headroom_bytes() -> int | None:
    """What this process may still allocate under its own limits: the address-space limit
    (``RLIMIT_AS``, e.g. ``ulimit -v``) less its current size, and a container's cgroup
    memory limit less its usage; None when neither applies."""
    room: list[int] = []
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            size = 0
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmSize:"):
                        size = int(line.split()[1]) * 1024
                        break
            room.append(max(0, soft - size))
    except (ImportError, OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < 1 << 60:
            room.append(max(0, limit - (_read_int(usage_file) or 0)))
            break
    return min(room) if room else None


def usable_memory_bytes() -> int | None:
    """Memory the app may use for one image: :data:`MEMORY_SHARE` of MemAvailable (Linux,
    else of the total RAM), and no more than the process's own limits allow
    (:func:`limit_headroom_bytes`); None if unknown."""
    avail: int | None = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        avail = physical_memory_bytes()
    headroom = limit_headroom_bytes()
    if headroom is not None:
        avail = headroom if avail is None else min(avail, headroom)
    return None if avail is None else int(avail * MEMORY_SHARE)


def out_of_memory_message(doing: str) -> str:
    """The message for a :class:`MemoryError` the budget check did not foresee."""
    have = usable_memory_bytes()
    room = f" (SegLoop may use about {have / 2**30:.1f} GiB now)" if have is not None else ""
    return (f"ran out of memory {doing}{room}; close other programs, or crop / downsample the scan")


@contextmanager
def memory_errors_named(path: str | Path, doing: str, before: Callable[[], object] | None = None) -> Iterator[None]:
    """Turn a :class:`MemoryError` inside the block into an :class:`ImageTooLargeError` that names
    ``path`` and what was being done ("reading this image"); ``before`` runs first (e.g. to end a
    progress line)."""
    try:
        yield
    except MemoryError:
        if before is not None:
            before()
        raise ImageTooLargeError(out_of_memory_message(doing), Path(path)) from None


def check_memory(path: Path, shape: tuple[int, ...], bytes_per_voxel: int) -> None:
    """Refuse before allocating when the voxels plus a float32 working copy cannot fit the
    memory the app may use (:class:`ImageTooLargeError`)."""
    n = int(np.prod([int(s) for s in shape], dtype=object))
    need = n * (bytes_per_voxel + 4)
    have = usable_memory_bytes()
    if have is not None and need > have:
        raise ImageTooLargeError(f"the header claims {' x '.join(str(s) for s in shape)} voxels of "
                                 f"{bytes_per_voxel} bytes: opening it needs about {need / 2**30:.1f} GiB of memory "
                                 f"but SegLoop may use only {have / 2**30:.1f} GiB now (close other programs, or "
                                 f"crop / downsample the scan)", path)


def validate_volume(volume: Volume, path: Path | None, allow_nonfinite: bool = False) -> None:
    """The one check between reading a volume and using it (CLI, GUI, dataset, training):
    non-empty shape, real voxel type, finite positive spacing, orthonormal direction,
    finite intensities (NaN/Inf: see :func:`handle_nonfinite`) that preprocessing's
    float32 can hold. Raises a :class:`SegLoopError` subclass naming the file."""
    array = volume.array
    if array.size == 0 or any(int(s) <= 0 for s in array.shape):
        raise ImageDimensionError(f"the image is empty (shape {tuple(array.shape)})", path)
    check_voxel_type(array.dtype, path)
    check_geometry(volume.spacing, volume.direction, path)
    if np.issubdtype(array.dtype, np.floating) and array.dtype.itemsize > 4:
        biggest = 0.0
        for s in slabs(array):
            fin = s[np.isfinite(s)] if allow_nonfinite else s
            if fin.size:
                biggest = max(biggest, float(np.max(np.abs(fin))))
        if biggest > FLOAT32_MAX:
            raise InvalidVoxelDataError(f"voxel values reach {biggest:.3g}, beyond the float32 range "
                                        f"({FLOAT32_MAX:.3g}) SegLoop computes in (a damaged scaling slope, or "
                                        f"not an intensity image)", path)
