"""SimpleITK plumbing: header-first reading, zero-copy arrays, geometry, atomic writing.

Used for NRRD, MetaImage, PNG/JPEG/TIFF/BMP and DICOM (data), and for the geometry of
NIfTI files (so SegLoop places a NIfTI scan where ITK-SNAP and 3D Slicer do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from unet_engine.errors import ImageDimensionError, InvalidVoxelDataError, UnsupportedImageError
from unet_engine.io.checks import check_budget, check_geometry, declared_type_problem, pick_time_index, short_reason
from unet_engine.volume import Volume, direction_from_itk, direction_to_itk, float3

#: what SimpleITK raises: RuntimeError, or UnicodeDecodeError when ITK's message quotes raw bytes
ITK_ERRORS = (RuntimeError, UnicodeDecodeError)

_COMPONENT_BYTES: dict[int, int] = {}
for _name, _nbytes in (("UInt8", 1), ("Int8", 1), ("UInt16", 2), ("Int16", 2), ("UInt32", 4), ("Int32", 4),
                       ("UInt64", 8), ("Int64", 8), ("Float32", 4), ("Float64", 8)):
    for _prefix in ("sitk", "sitkVector", "sitkLabel"):
        _pid = getattr(sitk, _prefix + _name, None)
        if isinstance(_pid, int) and _pid >= 0:
            _COMPONENT_BYTES[_pid] = _nbytes


class _ItkBuffer:
    """Owns a SimpleITK image while a numpy array uses its pixel buffer (no copy)."""

    def __init__(self, image: sitk.Image) -> None:
        self.image = image
        view = sitk.GetArrayViewFromImage(image)  # calls image.MakeUnique(): the buffer is ours alone
        iface = dict(view.__array_interface__)
        iface["data"] = (iface["data"][0], False)  # writable
        self.__array_interface__ = iface


def array_from_itk(image: sitk.Image) -> np.ndarray:
    """The image's pixels as a writable numpy array ``[k, j, i(, c)]`` sharing its buffer
    (the array keeps the image alive): no second copy of the voxels."""
    return np.asarray(_ItkBuffer(image))


@contextlib.contextmanager
def itk_warnings_off() -> Iterator[None]:
    """Silence ITK's C++ warnings (printed to stderr with its source paths) where SegLoop
    reports the situation itself, e.g. a NIfTI sform ITK ignores for unexpected scales."""
    was = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was)


def info_reader(path: Path, imageio: str = "") -> sitk.ImageFileReader:
    """An ImageFileReader on ``path`` whose header has been read (no voxels yet)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if imageio:
        reader.SetImageIO(imageio)
    try:
        reader.ReadImageInformation()
    except ITK_ERRORS as exc:
        reason = short_reason(exc)
        kind = path.suffix.lstrip(".").upper() or "image"
        declared = declared_type_problem(path)  # a text header naming no known voxel type says so
        if declared is not None:
            raise UnsupportedImageError(declared, path) from None
        if "Unknown PixelType" in reason:
            raise UnsupportedImageError(f"this {kind} file's pixel layout is not supported (e.g. gray + alpha); "
                                        f"save it as plain grayscale or RGB", path) from None
        if "Unable to determine ImageIO" in reason or "Could not create IO object" in reason:
            raise UnsupportedImageError(f"cannot read the image header: the file is damaged or not a {kind} file",
                                        path) from None
        raise UnsupportedImageError(f"cannot read the image header ({reason}); the file is damaged or not a "
                                    f"{kind} file", path) from None
    return reader


def component_bytes(pixel_id: int) -> int:
    try:
        return _COMPONENT_BYTES[pixel_id]
    except KeyError:
        raise UnsupportedImageError(f"unsupported voxel type {sitk.GetPixelIDValueAsString(pixel_id)}") from None


def geometry_from_itk(dim: int, spacing: tuple[float, ...], origin: tuple[float, ...],
                      direction: tuple[float, ...], k_spacing: float = 1.0
                      ) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """(spacing, origin, direction) in SegLoop's (k, j, i) convention from ITK's values of
    a 2D, 3D or 4D image (4D: the first three axes; 2D: a one-slice volume along z)."""
    if dim == 2:
        d = np.eye(3)
        d[:2, :2] = np.asarray(direction, dtype=np.float64).reshape(2, 2)
        return (float(k_spacing), float(spacing[1]), float(spacing[0])), (origin[0], origin[1], 0.0), \
            direction_from_itk(d.reshape(-1))
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    return (float(spacing[2]), float(spacing[1]), float(spacing[0])), float3(origin[:3]), \
        direction_from_itk(d.reshape(-1))


def volume_layout(reader: sitk.ImageFileReader, path: Path, volume_index: int | None,
                  allow_rgb: bool, photo: bool = False) -> tuple[tuple[int, ...], int, int | None, int | None]:
    """Decide how to read an image from its header.

    Returns ``(spatial size (i, j[, k]), components kept, time index to extract or None,
    component to select or None)``. A 4D image (or one with many values per voxel) raises
    :class:`ImageDimensionError` unless ``volume_index`` picks one volume.
    """
    dim = reader.GetDimension()
    size = tuple(int(s) for s in reader.GetSize())
    ncomp = int(reader.GetNumberOfComponents())
    if dim > 4:
        raise ImageDimensionError(f"a {dim}D image of size {size}; SegLoop opens 3D volumes (or 2D images) only", path)
    n_t = size[3] if dim == 4 else 1
    t_index = pick_time_index(n_t, size, volume_index, path)
    comp_index = None
    layers = reader.HasMetaDataKey("NRRD_kinds[pixel]") and reader.GetMetaData("NRRD_kinds[pixel]") == "list"
    if photo:
        rgb = ncomp in (2, 3, 4)
    else:
        rgb = allow_rgb and not layers and ncomp in (3, 4) and component_bytes(reader.GetPixelID()) == 1
    if layers and volume_index is None:
        raise ImageDimensionError(
            f"a segmentation with {ncomp} layers (overlapping segments, as 3D Slicer saves them); SegLoop reads "
            f"single-layer label maps: in Slicer use Segmentations > Export to labelmap, or pick one layer with "
            f"read_volume(path, volume_index=N) (N = 0..{ncomp - 1})", path)
    if ncomp > 1 and not rgb:
        if volume_index is None or n_t > 1:
            raise ImageDimensionError(
                f"each voxel holds {ncomp} values (a multi-component or 4D image); SegLoop opens single-channel "
                f"3D volumes only. Extract one component first, or open one with read_volume(path, volume_index=N) "
                f"(N = 0..{ncomp - 1})", path)
        if not 0 <= volume_index < ncomp:
            raise ImageDimensionError(f"volume_index {volume_index} is out of range: each voxel holds {ncomp} values",
                                      path)
        comp_index = volume_index
    elif volume_index not in (None, 0) and n_t == 1:
        raise ImageDimensionError(f"volume_index {volume_index} given but the image holds a single volume", path)
    return size[:3], ncomp, t_index, comp_index


def read_itk_volume(path: Path, *, max_voxels: int, volume_index: int | None = None, imageio: str = "",
                    allow_rgb: bool = True, photo: bool = False, reader: sitk.ImageFileReader | None = None
                    ) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float], np.ndarray,
                               sitk.ImageFileReader]:
    """Read a 2D/3D image with SimpleITK after checking its header.

    Returns ``(array [k, j, i(, c)], spacing, origin, direction, reader)``; RGBA loses
    its alpha channel. Truncated or damaged data raise :class:`UnsupportedImageError`.
    """
    reader = reader or info_reader(path, imageio)
    size, ncomp, t_index, comp_index = volume_layout(reader, path, volume_index, allow_rgb, photo)
    check_budget(path, size, component_bytes(reader.GetPixelID()) * ncomp, max_voxels)
    dim = reader.GetDimension()
    spacing, origin, direction = geometry_from_itk(dim, reader.GetSpacing(), reader.GetOrigin(),
                                                   reader.GetDirection())
    check_geometry(spacing, direction, path)  # before any voxel is allocated
    if path.suffix.lower() in (".mha", ".mhd"):
        full = 1
        for s in reader.GetSize():
            full *= int(s)
        check_metaimage_payload(path, full * ncomp * component_bytes(reader.GetPixelID()))
    if t_index is not None:
        reader.SetExtractIndex([0, 0, 0, t_index])
        reader.SetExtractSize([size[0], size[1], size[2], 0])
    try:
        image = reader.Execute()
    except ITK_ERRORS as exc:
        raise UnsupportedImageError(f"cannot read the voxel data (truncated or damaged file?): {short_reason(exc)}",
                                    path) from None
    array = array_from_itk(image)
    if image.GetDimension() == 4:  # 4D with a single volume
        array = array[0]
    elif image.GetDimension() == 2:
        array = array[np.newaxis]
    if comp_index is not None:
        array = np.ascontiguousarray(array[..., comp_index])
    elif array.ndim == 4 and array.shape[-1] == 4:
        array = np.ascontiguousarray(array[..., :3])
    return array, spacing, origin, direction, reader


def _metaimage_header(path: Path) -> tuple[dict[str, str], int] | None:
    """The ``key = value`` fields of a MetaImage header up to ElementDataFile, and the byte
    offset just past that line (where a ``.mha``'s LOCAL data starts); None if unparsable."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            return None
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            return fields, pos
    return None


def check_metaimage_payload(path: Path, expected: int) -> None:
    """A MetaImage whose header says ``CompressedData = True`` must hold zlib data that
    inflates to ``expected`` bytes (DimSize x channels x element size). ITK only prints
    "Uncompress failed" and hands back garbage otherwise, so refuse with
    :class:`InvalidVoxelDataError` first. The data is inflated in chunks and discarded."""
    parsed = _metaimage_header(path)
    if parsed is None:
        return
    fields, offset = parsed
    if fields.get("compresseddata", "").lower() not in ("true", "1"):
        return
    data_file = fields.get("elementdatafile", "")
    if fields.get("headersize") not in (None, "", "0"):
        return
    if data_file.upper() == "LOCAL":
        source, start = path, offset
    elif data_file and "%" not in data_file and " " not in data_file and data_file.upper() != "LIST":
        source, start = path.parent / data_file, 0
    else:
        return  # file lists and patterns: left to ITK
    if not source.is_file():
        return  # ITK reports the missing data file
    inflater = zlib.decompressobj(47)  # zlib or gzip header
    total = 0
    try:
        with open(source, "rb") as fh:
            fh.seek(start)
            while total < expected and not inflater.eof:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                while chunk and total < expected and not inflater.eof:
                    total += len(inflater.decompress(chunk, 1 << 22))
                    chunk = inflater.unconsumed_tail
    except zlib.error:
        raise InvalidVoxelDataError(f"the header says CompressedData = True but the voxel data "
                                    f"{'after it ' if source == path else f'in {source.name} '}is not zlib-compressed "
                                    f"(the header or the data is damaged); fix the header or re-save the image",
                                    path) from None
    if total < expected:
        raise InvalidVoxelDataError(f"the compressed voxel data inflates to {total} bytes but DimSize x element size "
                                    f"needs {expected}; the file is truncated or damaged", path)


def image_from_array(array: np.ndarray, like: Volume) -> sitk.Image:
    """A SimpleITK image of ``array`` (``[k, j, i(, c)]``) on ``like``'s grid (copies the data)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 4)
    image.SetSpacing(tuple(float(s) for s in like.spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in like.origin))
    image.SetDirection(direction_to_itk(like.direction))
    return image


def write_itk(image: sitk.Image, tmp: Path, *, compress: bool = True, metadata: dict[str, Any] | None = None) -> None:
    """Write ``image`` to ``tmp`` (format from its suffix) with optional string metadata."""
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, str(value))
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    except ITK_ERRORS as exc:
        raise UnsupportedImageError(f"could not write the image: {short_reason(exc)}", tmp) from None


def write_metaimage_pair(image: sitk.Image, target: Path, *, compress: bool = True) -> None:
    """Write a ``.mhd`` header + data file: both are written in a temp folder next to the
    target, then the data file and finally the header are renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write_itk(image, tmpdir / target.name, compress=compress)
        for f in sorted(tmpdir.iterdir(), key=lambda p: p.name == target.name):  # header last
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(f, target.parent / f.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmpdir)
