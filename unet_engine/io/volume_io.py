"""Reading scans and masks, writing masks and volumes, with exact geometry.

Public API:

* :func:`read_volume` — NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr, .seg.nrrd), MetaImage
  (.mha, .mhd), a DICOM folder or file, PNG/JPEG/TIFF/BMP -> :class:`Volume`.
* :func:`read_dicom_series` — a DICOM folder (see :mod:`unet_engine.io.dicom`).
* :func:`write_mask` / :func:`read_mask` — label maps on a scan's grid;
  :func:`read_mask_labels` — the label names and colours saved with one
  (:mod:`unet_engine.io.mask_labels`). A DICOM SEG or RTSTRUCT file is read as a mask over the
  DICOM series it references (:mod:`unet_engine.io.dicom_seg`, :mod:`unet_engine.io.rtstruct`).
* :func:`write_volume` — an image (the dataset module writes its NIfTI copies with it).

Geometry follows :mod:`unet_engine.volume` (array ``[k, j, i]``, LPS world). Readers
look at the header first and raise :class:`ImageTooLargeError` before allocating when it
claims an absurd size, and :class:`UnsupportedImageError` for empty, truncated or
damaged files. Every volume then goes through
:func:`unet_engine.io.checks.validate_volume` (non-empty, real voxels, finite positive
spacing, orthonormal direction, values float32 can hold). NaN/Inf voxels are refused
(:class:`InvalidVoxelDataError` with their count) unless ``allow_nonfinite=True``, which replaces them by the lowest finite value.
Writers go through :func:`unet_engine.io.atomic.atomic_path` (``.mhd`` through a temp
folder) and never overwrite the scan a volume was read from. Before the rename each
written file is checked (non-empty, its header reads back with the right shape, a NIfTI
holds all its bytes): ITK's writers print an error on a full disk without raising. A
failed save raises :class:`WriteFailedError` (folder and free space named) and leaves the
previous file as it was; an :class:`OSError` on a path being read becomes
:class:`FileAccessError` (path shortened, the OS's reason).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import numpy as np
import SimpleITK as sitk

from unet_engine.io.atomic import atomic_path, check_written, fsync_path, write_failed
from unet_engine.io.dicom import read_dicom_file, read_dicom_series
from unet_engine.io.dicom_seg import dicom_object_kind, read_dicom_seg
from unet_engine.errors import (FileAccessError, GeometryMismatchError, ImageDimensionError, InvalidVoxelDataError,
                                SegLoopError, SourceOverwriteError, UnsupportedImageError, WriteFailedError,
                                os_reason)
from unet_engine.io.image2d import read_image2d
from unet_engine.io.checks import (WRITE_SUFFIXES, check_budget, check_input_file, check_text_header_size,
                                   full_suffix, handle_nonfinite, image_format, label_array, memory_errors_named,
                                   validate_volume)
from unet_engine.io.itk_io import (array_from_itk, component_bytes, image_from_array, info_reader, itk_warnings_off,
                                read_itk_volume, volume_layout, write_itk)
from unet_engine.io.mask_labels import (LabelsArg, MaskLabels, as_descriptions, has_sidecar, read_mask_labels,
                                     write_label_file)
from unet_engine.io.nifti import read_nifti, warn_uncompressed_twin, write_nifti
from unet_engine.io.seg_nrrd import slicer_segment_fields
from unet_engine.volume import Volume, direction_to_itk, geometry_differences

__all__ = ["read_volume", "read_dicom_series", "read_mask", "read_mask_labels", "write_mask", "write_volume",
           "MaskLabels"]

log = logging.getLogger(__name__)

DEFAULT_MAX_VOXELS = 2_000_000_000


def read_volume(path: str | Path, *, max_voxels: int = DEFAULT_MAX_VOXELS, allow_nonfinite: bool = False,
                volume_index: int | None = None) -> Volume:
    """Read a scan (file or DICOM folder) as a :class:`Volume`.

    ``volume_index`` picks one volume of a 4D image (which otherwise raises
    :class:`ImageDimensionError`). ``modality`` is the DICOM Modality ("CT", "MR") when
    there is one, "photo" for colour pictures, else "unknown".
    """
    path = Path(path).expanduser()
    try:
        with memory_errors_named(path, "reading this image"):
            return _read_volume(path, max_voxels=max_voxels, allow_nonfinite=allow_nonfinite, volume_index=volume_index)
    except SegLoopError:
        raise
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, path) from None


def _read_volume(path: Path, *, max_voxels: int, allow_nonfinite: bool, volume_index: int | None) -> Volume:
    if path.is_dir():
        if volume_index not in (None, 0):
            raise ImageDimensionError("volume_index applies to 4D files, not DICOM folders", path)
        volume = read_dicom_series(path, max_voxels=max_voxels)
    else:
        check_input_file(path)
        fmt = image_format(path)
        if fmt == "nifti":
            array, spacing, origin, direction = read_nifti(path, max_voxels=max_voxels, volume_index=volume_index)
            volume = Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                            modality="photo" if array.ndim == 4 else "unknown", source_path=path)
        elif fmt in ("nrrd", "metaimage"):
            volume = _read_itk_file(path, fmt, max_voxels, volume_index)
        elif fmt == "image2d":
            volume = read_image2d(path, max_voxels=max_voxels, volume_index=volume_index)
        else:
            if volume_index not in (None, 0):
                raise ImageDimensionError("volume_index is not supported for DICOM files", path)
            volume = read_dicom_file(path, max_voxels=max_voxels)
    volume.array = handle_nonfinite(volume.array, path, allow_nonfinite)
    validate_volume(volume, path, allow_nonfinite)
    log.debug("read %s: shape %s, spacing %s, %s", path, volume.shape, volume.spacing, volume.orientation_code())
    return volume


def _read_itk_file(path: Path, fmt: str, max_voxels: int, volume_index: int | None) -> Volume:
    reader = info_reader(path)
    size, ncomp, _t, _c = volume_layout(reader, path, volume_index, allow_rgb=True)
    nbytes = component_bytes(reader.GetPixelID()) * ncomp
    check_budget(path, size, nbytes, max_voxels)
    full = int(np.prod([int(s) for s in reader.GetSize()], dtype=np.int64))
    check_text_header_size(path, fmt, full * nbytes)
    array, spacing, origin, direction, _ = read_itk_volume(path, max_voxels=max_voxels, volume_index=volume_index,
                                                           reader=reader)
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                  modality="photo" if array.ndim == 4 else "unknown", source_path=path)


# ----- writing -----------------------------------------------------------------------------
def _check_target(target: Path, like: Volume, suffixes: tuple[str, ...] = WRITE_SUFFIXES) -> str:
    """Suffix of a writable target; refuses the source scan and unknown formats."""
    suffix = full_suffix(target)
    if suffix not in suffixes:
        raise UnsupportedImageError(f"cannot save as {suffix or '(no extension)'!r}; use one of "
                                    f"{', '.join(suffixes)}", target)
    src = like.source_path
    if src is not None:
        src = Path(src)
        same = target.resolve() == src.resolve()
        if not same and target.exists() and src.exists():
            try:
                same = os.path.samefile(target, src)
            except OSError:
                same = False
        if same:
            raise SourceOverwriteError("refusing to overwrite the scan itself; save the mask under another name", target)
        if src.is_dir() and target.exists() and target.resolve().parent == src.resolve():
            raise SourceOverwriteError("refusing to overwrite a file inside the scan's DICOM folder", target)
    if target.is_dir():
        raise UnsupportedImageError("a folder has this name; choose a file name", target)
    return suffix


def _write_array(array: np.ndarray, like: Volume, target: Path, suffix: str, *, description: str,
                 metadata: Mapping[str, str] | None = None) -> Path:
    verify = _image_check(array)
    try:
        if suffix == ".mhd":
            _write_metaimage_checked(image_from_array(array, like), target, verify)
            return target
        if suffix == ".nii.gz":
            warn_uncompressed_twin(target)
        with atomic_path(target, verify=verify) as tmp:
            if suffix in (".nii", ".nii.gz") and array.ndim == 3:
                write_nifti(array, like, tmp, description)
            else:
                write_itk(image_from_array(array, like), tmp, compress=suffix != ".nii",
                          metadata=dict(metadata or {}))
    except WriteFailedError:
        raise
    except OSError as exc:
        raise write_failed(target, os_reason(exc)) from None
    return target


def _image_check(array: np.ndarray) -> Callable[[Path], str | None]:
    """A check for :func:`atomic_path`: the written file's header reads back with ``array``'s
    shape, and an uncompressed ``.nii`` / a gzip ``.nii.gz`` holds all of its bytes."""
    expected = tuple(int(n) for n in array.shape if int(n) != 1)

    def check(path: Path) -> str | None:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            with itk_warnings_off():  # e.g. a source sform copied verbatim: the read warned already
                reader.ReadImageInformation()
        except RuntimeError:
            return "the written file's header cannot be read back"
        dims = [int(n) for n in reader.GetSize()[::-1]]
        if reader.GetNumberOfComponents() > 1:
            dims.append(int(reader.GetNumberOfComponents()))
        got = tuple(n for n in dims if n != 1)
        if got != expected:
            return f"the written file holds shape {tuple(dims)}, not {tuple(array.shape)}"
        name = path.name.lower()
        if name.endswith(".nii") or name.endswith(".nii.gz"):
            return _nifti_size_problem(path, name.endswith(".gz"))
        return None

    return check


def _nifti_size_problem(path: Path, gz: bool) -> str | None:
    """Short data in a written NIfTI: file size (.nii) or the gzip trailer's length (.nii.gz)."""
    import nibabel as nib
    from nibabel.arrayproxy import ArrayProxy

    img = cast(nib.Nifti1Image, nib.load(str(path)))  # a .nii / .nii.gz name (Nifti2Image is a subclass)
    want = int(cast(ArrayProxy, img.dataobj).offset) + int(np.prod(img.shape, dtype=np.int64)) * img.get_data_dtype().itemsize
    if not gz:
        size = path.stat().st_size
        return None if size >= want else f"only {size} of {want} bytes were written"
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        isize = int.from_bytes(fh.read(4), "little")
    if isize != want % 2**32:
        return "the compressed data is incomplete"
    return None


def _write_metaimage_checked(image: sitk.Image, target: Path, verify: Callable[[Path], str | None]) -> None:
    """``.mhd`` header + data file, written and checked in a temp folder next to the target,
    then renamed into place (data file first, header last)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name[:80]}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise write_failed(target, os_reason(exc)) from None
    try:
        write_itk(image, tmpdir / target.name)
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == target.name)  # header last
        for f in files:
            problem = check_written(f)
            if problem is not None:
                raise write_failed(target, f"{f.name}: {problem}")
        problem = check_written(tmpdir / target.name, verify)
        if problem is not None:
            raise write_failed(target, problem)
        for f in files:
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(f, target.parent / f.name)
        fsync_path(target.parent)
    except OSError as exc:
        if isinstance(exc, WriteFailedError):
            raise
        raise write_failed(target, os_reason(exc)) from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmpdir)


def write_mask(mask: np.ndarray, like: Volume, path: str | Path, *, labels: LabelsArg | None = None) -> Path:
    """Save a label map on ``like``'s grid: same shape, spacing, origin and direction.

    Formats: .nii.gz/.nii, .nrrd, .seg.nrrd, .mha/.mhd, and .dcm: a DICOM SEG on the DICOM
    series ``like`` was opened from (:func:`unet_engine.io.dicom_seg_write.write_dicom_seg`,
    names and colours in its segments; refused for a scan not opened from DICOM). Values
    are stored as uint8 (max < 256) or uint16. ``labels`` (``{value: name}`` or :class:`LabelDescription` entries)
    names and colours the labels: .seg.nrrd keeps them as 3D Slicer segment fields, the
    other formats in an ITK-SNAP label description file written beside the mask
    (:func:`unet_engine.io.label_descriptions.sidecar_path`), replacing an older one; without
    ``labels`` no such file is written or touched. :func:`read_mask_labels` reads them back.
    Raises :class:`GeometryMismatchError` when the shape differs from ``like``,
    :class:`InvalidVoxelDataError` for values that are not labels (fractions, NaN,
    negative, > 65535), :class:`SegLoopError` when ``path`` is the scan itself.
    Written atomically; returns the path.
    """
    target = Path(path).expanduser()
    try:
        return _write_mask(mask, like, target, labels)
    except SegLoopError:
        raise
    except OSError as exc:
        raise write_failed(target, os_reason(exc)) from None


def _write_mask(mask: np.ndarray, like: Volume, target: Path, labels: LabelsArg | None) -> Path:
    suffix = _check_target(target, like, WRITE_SUFFIXES + (".dcm",))
    if suffix == ".dcm":
        from unet_engine.io.dicom_seg_write import write_dicom_seg

        return write_dicom_seg(mask, like, target, labels=labels).path
    arr = np.asarray(mask)
    if tuple(arr.shape) != like.shape:
        raise GeometryMismatchError(f"the mask's shape {tuple(arr.shape)} does not match the scan's {like.shape} "
                                    f"(k, j, i)", target)
    arr = label_array(arr, target, "mask")
    described = as_descriptions(labels) if labels is not None else None
    metadata = slicer_segment_fields(arr, described or ()) if suffix == ".seg.nrrd" else None
    _write_array(arr, like, target, suffix, description="SegLoop label map", metadata=metadata)
    if described is not None and has_sidecar(suffix):
        write_label_file(target, described)
    return target


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Save an image (any numeric dtype; RGB to .nrrd/.mha/.nii) atomically; returns the path."""
    target = Path(path).expanduser()
    try:
        suffix = _check_target(target, volume)
    except SegLoopError:
        raise
    except OSError as exc:
        raise write_failed(target, os_reason(exc)) from None
    arr = np.asarray(volume.array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InvalidVoxelDataError(f"cannot save {arr.dtype} voxels", target)
    return _write_array(arr, volume, target, suffix, description="SegLoop")


# ----- masks -------------------------------------------------------------------------------
def read_mask(path: str | Path, like: Volume, *, resample: bool = False) -> np.ndarray:
    """Read a label map for the scan ``like``; returns a uint8/uint16 array ``[k, j, i]``.

    The file must lie on the scan's grid (:func:`geometry_differences`), else
    :class:`GeometryMismatchError` lists the differences; with ``resample=True`` it is
    resampled onto the scan grid instead (nearest neighbour, outside = 0). Values must be
    whole numbers 0..65535 (a float 0/1 mask is fine), else :class:`InvalidVoxelDataError`.

    A DICOM SEG or RTSTRUCT file is read onto ``like``, which must be the DICOM series it
    references (:mod:`unet_engine.io.dicom_seg`, :mod:`unet_engine.io.rtstruct`); it is never
    resampled, whatever ``resample`` says.
    """
    path = Path(path).expanduser()
    try:
        return _read_mask(path, like, resample)
    except SegLoopError:
        raise
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, path) from None


def _read_mask(path: Path, like: Volume, resample: bool) -> np.ndarray:
    kind = dicom_object_kind(path)
    if kind == "SEG":
        return read_dicom_seg(path, like).array
    if kind == "RTSTRUCT":
        from unet_engine.io.rtstruct import read_rtstruct

        return read_rtstruct(path, like).array
    vol = read_volume(path)
    if vol.channels != 1:
        raise InvalidVoxelDataError(f"each voxel holds {vol.channels} values (a colour image?); a label map has one",
                                    path)
    labels = label_array(vol.array, path)
    diffs = geometry_differences(like, vol)
    if not diffs:
        return labels
    scan = f" {like.source_path.name}" if like.source_path is not None else ""
    if not resample:
        raise GeometryMismatchError(f"the label map does not line up with the scan{scan}: {'; '.join(diffs)} "
                                    f"(label map vs scan). Open it with resample=True to resample it onto the scan's "
                                    f"grid (nearest neighbour)", path)
    log.info("resampling %s onto the grid of the scan%s (%s)", path, scan, "; ".join(diffs))
    return _resample_nearest(labels, vol, like)


def _resample_nearest(labels: np.ndarray, grid: Volume, like: Volume) -> np.ndarray:
    source = image_from_array(labels, grid)
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in like.shape[::-1]])
    f.SetOutputSpacing([float(s) for s in like.spacing[::-1]])
    f.SetOutputOrigin([float(o) for o in like.origin])
    f.SetOutputDirection(direction_to_itk(like.direction))
    f.SetInterpolator(sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(0)
    f.SetOutputPixelType(source.GetPixelID())
    f.SetTransform(sitk.Transform())
    return np.ascontiguousarray(array_from_itk(f.Execute(source)))
