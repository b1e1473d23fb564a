"""NIfTI-1/2 reading and writing (.nii, .nii.gz).

* The header comes from nibabel (shape, dtype, offset, scl_slope/inter, applied the way
  ``np.asanyarray(img.dataobj)`` does). The voxels go straight into one array: one copy
  of the voxels in memory (nibabel and SimpleITK's NIfTI reader both peak at two), and a
  truncated file is an error (SimpleITK's NIfTI reader silently zero-fills the missing
  part). ``.nii.gz`` voxels are inflated with ISA-L (``isal.igzip``, about twice the speed
  of Python's zlib, multi-member files included) straight into that array, and the rest
  of the stream is read so the gzip CRC-32 and length are checked: a damaged or cut file
  is an error naming it.
* Geometry comes from SimpleITK's header reader, so a scan lands where ITK-SNAP and
  3D Slicer put it. When the header's qform and sform disagree, ITK and nibabel pick
  different ones (ITK prefers the sform only when its code is 1 "scanner" or the qform is
  absent); SegLoop logs a warning and, when it saves a mask for such a scan, copies both
  forms verbatim so every tool sees the mask exactly where it sees the scan.
* Writing: nibabel, with qform and sform both set (code 1) from the Volume geometry, or
  copied bit-for-bit from the source NIfTI when the Volume still has its geometry.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, cast

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from isal import igzip
from nibabel.volumeutils import apply_read_scaling

from unet_engine.errors import ImageDimensionError, InvalidVoxelDataError, UnsupportedImageError
from unet_engine.io.checks import (FLOAT32_MAX, check_budget, check_geometry, check_stored_size, check_voxel_type,
                                  pick_time_index, short_reason)
from unet_engine.io.itk_io import geometry_from_itk, info_reader, itk_warnings_off
from unet_engine.volume import Volume, int3

log = logging.getLogger(__name__)

_CHUNK = 16 << 20  # output bytes per step
_TAIL_CHUNK = 1 << 20  # bytes per gzip read (igzip copies through a buffer of this size)
_FORM_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z", "xyzt_units")
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, OverflowError, zlib.error,
                gzip.BadGzipFile)  # OverflowError: e.g. vox_offset = inf


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Hold back nibabel's header-check chatter ("vox offset not divisible by 16 ...", "data
    code 1536 not supported", printed by its own handler) and numpy's warnings while it builds
    the affine: SegLoop checks the header next and says what matters, in one line."""
    logger = logging.getLogger("nibabel.global")
    was = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with np.errstate(all="ignore"):  # an affine from a NaN / Inf pixdim: refused next, no RuntimeWarning
            yield
    finally:
        logger.setLevel(was)


def _load_header(path: Path) -> nib.Nifti1Image:
    try:
        with _quiet_nibabel():
            img = nib.load(str(path), mmap=False)
    except ImageFileError:
        raise UnsupportedImageError("not a readable NIfTI file: the header is not NIfTI-1/2 (damaged, or another "
                                    "format under a .nii name)", path) from None
    except OverflowError:
        raise UnsupportedImageError("not a readable NIfTI file: a header field (e.g. vox_offset) is infinite; the "
                                    "header is damaged", path) from None
    except _READ_ERRORS as exc:
        raise UnsupportedImageError(f"not a readable NIfTI file: {short_reason(exc)}", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UnsupportedImageError(f"not a NIfTI file (nibabel sees {type(img).__name__})", path)
    return img


def _layout(img: nib.Nifti1Image, path: Path, volume_index: int | None
            ) -> tuple[tuple[int, int, int], int, int, int]:
    """((ni, nj, nk), volumes, components, volume to read) from the header's dims."""
    shape = tuple(int(s) for s in img.header.get_data_shape())
    spatial = int3((shape + (1, 1, 1))[:3])
    n_t = shape[3] if len(shape) > 3 else 1
    n_c = int(np.prod(shape[4:])) if len(shape) > 4 else 1
    if len(shape) > 5 and any(s > 1 for s in shape[5:]):
        raise ImageDimensionError(f"a {len(shape)}D image of shape {shape}; SegLoop opens 3D volumes only", path)
    if n_c > 1 and n_t > 1:
        raise ImageDimensionError(f"a 4D image with {n_t} volumes of {n_c}-component voxels; SegLoop opens 3D "
                                  f"volumes only", path)
    colour = n_c in (3, 4) and np.dtype(img.header.get_data_dtype()) == np.uint8  # e.g. RGB saved by ITK
    if n_c > 1 and not colour:
        raise ImageDimensionError(f"each voxel holds {n_c} values (a vector image, shape {shape}); SegLoop opens "
                                  f"single-channel 3D volumes only; extract one component first", path)
    t = pick_time_index(n_t, shape, volume_index, path) or 0
    if n_t <= 1 and volume_index not in (None, 0):
        raise ImageDimensionError(f"volume_index {volume_index} given but the image holds a single volume", path)
    return spatial, n_t, n_c, t


class _ReadsInto(Protocol):
    """A binary file that reads into a caller's buffer (a plain file, an igzip stream)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _read_exact(fobj: _ReadsInto, out: np.ndarray, path: Path, chunk: int = _CHUNK) -> None:
    """Fill the uint8 array ``out`` from the file ``fobj`` (positioned), ``chunk`` bytes a step."""
    view = out.data  # memoryview(out)
    pos, total = 0, out.nbytes
    while pos < total:
        n = fobj.readinto(view[pos:pos + chunk])
        if not n:
            break
        pos += n
    if pos < total:
        raise UnsupportedImageError(f"the file is truncated: {pos:,} of {total:,} bytes of voxel data are there "
                                    f"(was the copy interrupted?)", path)


def _gunzip_into(path: Path, skip: int, out: np.ndarray, *, to_end: bool) -> None:
    """Decompress ``path`` (gzip, possibly multi-member) into the uint8 array ``out``,
    dropping the first ``skip`` bytes, with ISA-L (``isal.igzip``: about twice zlib's
    speed); bounded extra memory, no second copy of the voxels. With ``to_end`` the rest
    of the stream is read too, so the gzip CRC and length are checked. A stream that ends
    early or is damaged is :class:`UnsupportedImageError`."""
    try:
        with igzip.open(path, "rb") as fh:
            fh.seek(skip)
            _read_exact(fh, out, path, _TAIL_CHUNK)  # igzip's readinto goes through a buffer this size
            if to_end:
                while fh.read(_TAIL_CHUNK):
                    pass
    except EOFError:
        raise UnsupportedImageError(f"the file is truncated: the compressed data ends before the end of the "
                                    f"{out.nbytes:,} bytes of voxel data (was the copy interrupted?)", path) from None
    except (OSError, zlib.error, ValueError) as exc:
        raise UnsupportedImageError(f"the compressed data is damaged ({short_reason(exc)}); re-copy or re-export "
                                    f"the file", path) from None


def warn_uncompressed_twin(path: Path) -> None:
    """Warn when ``x.nii`` sits beside ``x.nii.gz``: ITK (so ITK-SNAP, 3D Slicer) then takes
    the header from ``x.nii.gz`` but the voxels from ``x.nii`` (seen with SimpleITK 2.5)."""
    name = path.name
    if name.lower().endswith(".nii.gz"):
        twin = path.with_name(name[: -len(".gz")])
        if twin.exists():
            log.warning("%s: a file %s sits beside it; ITK-based tools (ITK-SNAP, 3D Slicer) reading %s take its "
                        "voxels from %s. Rename or remove one of them.", path, twin.name, name, twin.name)


def read_nifti(path: Path, *, max_voxels: int, volume_index: int | None = None
               ) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """Read a NIfTI file: ``(array [k, j, i(, 3)], spacing, origin, direction)``."""
    warn_uncompressed_twin(path)
    img = _load_header(path)
    hdr = img.header
    (ni, nj, nk), n_t, n_c, t = _layout(img, path, volume_index)
    disk_dtype = np.dtype(hdr.get_data_dtype())
    check_nifti_header(img, path)
    rgb = disk_dtype.fields is not None or n_c > 1
    itemsize = disk_dtype.itemsize * n_c
    check_budget(path, (ni, nj, nk), itemsize, max_voxels)
    vol_bytes = ni * nj * nk * itemsize
    proxy = cast(ArrayProxy, img.dataobj)  # a file-backed image: its data is an ArrayProxy
    offset = int(proxy.offset)
    compressed = path.name.lower().endswith(".gz")
    check_stored_size(path, vol_bytes * n_t, compressed=compressed,
                      available=None if compressed else path.stat().st_size - offset)

    with itk_warnings_off():  # an ignored sform: _warn_if_forms_disagree says so in plain words
        reader = info_reader(path, "NiftiImageIO")  # geometry as ITK-SNAP / Slicer see it
    spacing, origin, direction = geometry_from_itk(reader.GetDimension(), reader.GetSpacing(), reader.GetOrigin(),
                                                   reader.GetDirection())
    check_geometry(spacing, direction, path)  # before any voxel is allocated
    _warn_if_forms_disagree(path, img, spacing, origin, direction, (nk, nj, ni))

    start = offset + t * vol_bytes
    buf = np.empty(vol_bytes, dtype=np.uint8)
    if compressed:
        _gunzip_into(path, start, buf, to_end=t == n_t - 1)
    else:
        with open(path, "rb") as fobj:
            fobj.seek(start)
            _read_exact(fobj, buf, path)
    if n_c > 1:  # vector intent: one plane per component, then drop alpha
        planes = buf.reshape(n_c, nk, nj, ni)[:3]
        return np.ascontiguousarray(np.moveaxis(planes, 0, -1)), spacing, origin, direction
    if rgb:  # RGB24: 3 bytes per voxel, i fastest
        return buf.reshape(nk, nj, ni, itemsize), spacing, origin, direction
    raw = buf.view(disk_dtype).reshape(nk, nj, ni)  # Fortran (i, j, k) on disk == C (k, j, i)
    if not raw.dtype.isnative:
        raw = raw.byteswap(inplace=True).view(raw.dtype.newbyteorder("="))
    array = _scale(raw, proxy.slope, proxy.inter)
    return array, spacing, origin, direction


def _raw_header(img: nib.Nifti1Image, path: Path) -> nib.Nifti1Header:
    """The header as stored: nibabel's loader "fixes" zero / negative pixdims to 1 / abs."""
    size = img.header.sizeof_hdr
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            block = fh.read(size)
        return type(img.header)(binaryblock=block, endianness=img.header.endianness, check=False)
    except (OSError, EOFError, ValueError, zlib.error, HeaderDataError):
        return img.header


def check_nifti_header(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse a NIfTI header SegLoop would otherwise read with made-up values: an empty
    dimension, complex or other non-real voxels, a scaling that overflows, and a
    qform (pixdim) or sform that is not finite or is degenerate."""
    hdr = _raw_header(img, path)
    dims = [int(d) for d in hdr["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d <= 0 for d in dims[1:ndim + 1]):
        raise ImageDimensionError(f"the header claims an empty image (dim = {dims[:max(1, min(ndim, 7)) + 1]}); "
                                  f"there are no voxels to read", path)
    dtype = np.dtype(hdr.get_data_dtype())
    check_voxel_type(dtype, path)
    slope, inter = (float(v) for v in hdr.get_slope_inter()) if None not in hdr.get_slope_inter() else (1.0, 0.0)
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise InvalidVoxelDataError(f"the intensity scaling is not finite (scl_slope {slope:g}, scl_inter "
                                    f"{inter:g}); the header is damaged", path)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        top = max(abs(slope * float(info.min) + inter), abs(slope * float(info.max) + inter))
        if top > FLOAT32_MAX:
            raise InvalidVoxelDataError(f"scl_slope {slope:g} / scl_inter {inter:g} scale {dtype} voxels up to "
                                        f"{top:.3g}, beyond the float32 range SegLoop computes in; the header's "
                                        f"scaling is damaged", path)
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode > 0 or scode == 0:  # the qform, or the bare pixdim, places the voxels
        n = min(ndim, 3)
        pix = [float(v) for v in hdr["pixdim"][1:n + 1]]
        if not all(np.isfinite(v) and v > 0 for v in pix):
            form = "qform" if qcode > 0 else "pixdim-only geometry"
            raise UnsupportedImageError(f"the voxel size (pixdim {tuple(pix)}) is not finite and positive while the "
                                        f"{form} is in use; the header's geometry is damaged (re-export the scan)",
                                        path)
    if scode > 0:
        m = np.array([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"]], dtype=np.float64)
        lin = m[:, :3]
        norms = np.linalg.norm(lin, axis=0) if np.all(np.isfinite(m)) else np.zeros(3)
        if not np.all(np.isfinite(m)) or np.any(norms == 0) or \
                abs(float(np.linalg.det(lin))) <= 1e-6 * float(np.prod(norms)):
            raise UnsupportedImageError(f"the sform (code {scode}) is not finite or is degenerate (srow matrix "
                                        f"{np.round(lin, 4).tolist()}); the header's geometry is damaged", path)


def _scale(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """nibabel's read scaling (scl_slope / scl_inter), as ``np.asanyarray(img.dataobj)`` does."""
    slope_a, inter_a = np.asanyarray(slope), np.asanyarray(inter)
    if slope_a == 1 and inter_a == 0:
        return raw
    use = slope_a.dtype
    if np.can_cast(inter_a, use):
        inter_a = inter_a.astype(use)
    # nibabel annotates slope / inter as scalars but passes these 0-d arrays itself (ArrayProxy._get_scaled)
    return apply_read_scaling(raw, slope_a.astype(use), inter_a)  # type: ignore[arg-type]


def _warn_if_forms_disagree(path: Path, img: nib.Nifti1Image, spacing: tuple[float, float, float],
                            origin: tuple[float, float, float], direction: np.ndarray,
                            shape: tuple[int, int, int]) -> None:
    """Log when nibabel's affine (sform first) and ITK's geometry place voxels differently."""
    vol = Volume(array=np.empty((0, 0, 0)), spacing=spacing, origin=origin, direction=direction)
    nk, nj, ni = shape
    corners = np.array([[i, j, k, 1.0] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)])
    ours = corners @ vol.affine_ras_ijk.T
    theirs = corners @ np.asarray(img.affine, dtype=np.float64).T
    worst = float(np.max(np.linalg.norm(ours[:, :3] - theirs[:, :3], axis=1)))
    if worst > 1e-3:
        hdr = img.header
        log.warning("%s: the NIfTI header's qform (code %d) and sform (code %d) place the scan differently (up to "
                    "%.3g mm apart); SegLoop uses the geometry ITK-SNAP and 3D Slicer use, nibabel-based tools use "
                    "the other. Masks saved for this scan copy both forms, so every tool lines them up with the scan.",
                    path, int(hdr["qform_code"]), int(hdr["sform_code"]), worst)


def _source_header(like: Volume) -> nib.Nifti1Header | None:
    """The source NIfTI header of ``like`` when ``like`` still has that file's grid."""
    src = like.source_path
    if src is None or not str(src).lower().endswith((".nii", ".nii.gz")) or not Path(src).is_file():
        return None
    try:
        with _quiet_nibabel():
            img = cast(nib.Nifti1Image, nib.load(str(src)))  # a .nii / .nii.gz name (Nifti2Image is a subclass)
        with itk_warnings_off():  # reading the scan warned about its forms already
            reader = info_reader(Path(src), "NiftiImageIO")
    except (UnsupportedImageError, *_READ_ERRORS):
        return None
    shape = tuple(int(s) for s in img.header.get_data_shape())
    if (shape + (1, 1))[:3] != like.shape[::-1]:
        return None
    spacing, origin, direction = geometry_from_itk(reader.GetDimension(), reader.GetSpacing(), reader.GetOrigin(),
                                                   reader.GetDirection())
    same = (np.allclose(spacing, like.spacing, rtol=0, atol=1e-9)
            and np.allclose(origin, like.origin, rtol=0, atol=1e-9)
            and np.allclose(direction, like.direction, rtol=0, atol=1e-12))
    return img.header if same else None


def nifti_image(array: np.ndarray, like: Volume, description: str = "") -> nib.Nifti1Image:
    """A nibabel image of ``array`` (``[k, j, i]``) on ``like``'s grid, ready to save."""
    data = np.asarray(array).T  # (i, j, k), Fortran order: no copy
    src = _source_header(like)
    big = max(data.shape) > 32767
    header_class = nib.Nifti2Header if big or isinstance(src, nib.Nifti2Header) else nib.Nifti1Header
    image_class = nib.Nifti2Image if header_class is nib.Nifti2Header else nib.Nifti1Image
    hdr = header_class()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    if src is not None and type(src) is header_class:
        for key in _FORM_FIELDS:
            hdr[key] = src[key]
        hdr["pixdim"][:4] = src["pixdim"][:4]
    else:
        affine = like.affine_ras_ijk
        hdr.set_qform(affine, code=1)
        hdr.set_sform(affine, code=1)
        hdr.set_xyzt_units("mm")
    if description:
        hdr["descrip"] = description[:79].encode("ascii", "replace")
    return image_class(data, None, header=hdr)


def write_nifti(array: np.ndarray, like: Volume, tmp: Path, description: str = "") -> None:
    """Save ``array`` as NIfTI at ``tmp`` (gzip when the name ends in ``.gz``)."""
    if array.ndim != 3:
        raise UnsupportedImageError(f"NIfTI output takes a 3D single-channel array, got shape {array.shape}; "
                                    f"save multi-channel images as .nrrd or .mha", tmp)
    img = nifti_image(array, like, description)
    try:
        nib.save(img, str(tmp))
    except (HeaderDataError, ImageFileError, ValueError) as exc:
        raise UnsupportedImageError(f"could not write NIfTI: {short_reason(exc)}", tmp) from None
