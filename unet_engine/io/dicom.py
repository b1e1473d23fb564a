"""DICOM series and single DICOM files, read with SimpleITK's GDCM reader.

Slices are ordered by ``ImagePositionPatient`` projected on the slice normal (the cross
product of the two ``ImageOrientationPatient`` vectors), never by file name or instance
number. Before any voxel is read the series is checked: same size, orientation and pixel
spacing on every slice, no two slices at one position, evenly spaced slices (a gap of two
or more steps is reported as missing slices, with where they should be), and slices
stacked straight along the normal (a gantry-tilted stack cannot be represented exactly
and is refused rather than silently sheared). GDCM applies RescaleSlope/Intercept, so CT
comes out in Hounsfield units; when slices carry different rescale values the volume is
read as float32 so no slice is truncated.

A folder that also holds non-image objects (a DICOM SEG, RTSTRUCT, RT plan/dose, structured
report, presentation state, key-object selection...) opens its image series: those objects
are left out of the choice. Uncompressed pixel data shorter than Rows x Columns x frames x
samples x BitsAllocated (declared, or cut short by the end of the file) is refused, naming the
file, before any voxel is read; so is a file of the series that GDCM cannot read at all,
rather than dropping that slice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pydicom
import SimpleITK as sitk

from unet_engine.errors import DicomSeriesError, InvalidVoxelDataError, SegLoopError, UnsupportedImageError
from unet_engine.io.checks import check_budget, check_input_file, short_reason
from unet_engine.io.itk_io import ITK_ERRORS, array_from_itk, component_bytes, read_itk_volume
from unet_engine.volume import Volume, float3

log = logging.getLogger(__name__)

_MODALITIES = {"CT": "CT", "MR": "MR", "SEG": "label"}

#: Modality values of DICOM objects that are not images to segment
_NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG",
                                   "FID", "DOC", "PLAN", "RWV", "AU", "ECG", "HD", "RESP"})
_STORAGE = "1.2.840.10008.5.1.4.1.1."
#: SOP class UIDs (and their sub-classes) of non-image objects: raw data, registration,
#: fiducials, SEG, surface segmentation (66.x); presentation states (11.x); SR and KO (88.x);
#: waveforms (9.x); encapsulated PDF/CDA/STL (104.x); RT objects except RT Image (481.x)
_NON_IMAGE_SOP_PREFIXES = tuple(_STORAGE + s for s in ("66", "11", "88", "9", "104", "481"))
_RT_IMAGE_SOP = _STORAGE + "481.1"


def is_image_object(s: DicomSlice) -> bool:
    """False for a DICOM object that is not an image series to open (SEG, RTSTRUCT, SR...)."""
    if s.modality in _NON_IMAGE_MODALITIES:
        return False
    sop = s.sop_class
    if sop == _RT_IMAGE_SOP:
        return True
    return not any(sop == p or sop.startswith(p + ".") for p in _NON_IMAGE_SOP_PREFIXES)


@dataclass
class DicomSlice:
    """Header facts of one DICOM file (no pixels)."""

    path: Path
    series_uid: str
    series_number: str
    description: str
    modality: str
    position: np.ndarray | None
    orientation: np.ndarray | None
    rows: int
    cols: int
    frames: int
    components: int
    pixel_spacing: str
    rescale: tuple[str, str]
    thickness: float | None
    between: float | None
    pixel_id: int
    sop_class: str = ""


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _floats(text: str, n: int) -> np.ndarray | None:
    try:
        vals = np.array([float(v) for v in text.replace(",", "\\").split("\\") if v.strip()], dtype=np.float64)
    except ValueError:
        return None
    return vals if vals.size == n and np.all(np.isfinite(vals)) else None


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if np.isfinite(v) and v > 0 else None


def read_slice_header(path: Path) -> tuple[DicomSlice, sitk.ImageFileReader] | None:
    """Header of one file, or None when GDCM cannot read it as a DICOM image."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except ITK_ERRORS:
        return None
    size = reader.GetSize()
    info = DicomSlice(
        path=path, series_uid=_tag(reader, "0020|000e"), series_number=_tag(reader, "0020|0011"),
        description=_tag(reader, "0008|103e"), modality=_tag(reader, "0008|0060").upper(),
        position=_floats(_tag(reader, "0020|0032"), 3), orientation=_floats(_tag(reader, "0020|0037"), 6),
        rows=int(size[1]), cols=int(size[0]), frames=int(size[2]) if len(size) > 2 else 1,
        components=int(reader.GetNumberOfComponents()), pixel_spacing=_tag(reader, "0028|0030"),
        rescale=(_tag(reader, "0028|1053") or "1", _tag(reader, "0028|1052") or "0"),
        thickness=_float(_tag(reader, "0018|0050")), between=_float(_tag(reader, "0018|0088")),
        pixel_id=int(reader.GetPixelID()), sop_class=_tag(reader, "0008|0016").rstrip("\x00"),
    )
    return info, reader


def scan_folder(folder: Path) -> tuple[dict[str, list[DicomSlice]], list[Path]]:
    """Group the DICOM images of ``folder`` (not recursive) by SeriesInstanceUID.

    Returns ``({series_uid: slices}, files that are not readable DICOM images)``.
    """
    series: dict[str, list[DicomSlice]] = {}
    skipped: list[Path] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
            continue
        got = read_slice_header(path)
        if got is None:
            skipped.append(path)
            continue
        series.setdefault(got[0].series_uid, []).append(got[0])
    return series, skipped


def _describe(uid: str, slices: list[DicomSlice]) -> str:
    s = slices[0]
    label = s.description or "(no description)"
    n = sum(x.frames for x in slices)
    return f"series {s.series_number or '?'} {label!r} ({s.modality or '?'}, {n} slices, UID {uid or '?'})"


def read_dicom_series(folder: str | Path, *, max_voxels: int = 2_000_000_000,
                      series_uid: str | None = None) -> Volume:
    """Read the DICOM series in ``folder`` as one :class:`Volume` (LPS, ``[k, j, i]``).

    With several series in the folder the one with the most slices is opened (or
    ``series_uid``) and the choice is logged. A single file is read on its own.
    Raises :class:`DicomSeriesError` for a folder without DICOM images, missing or
    duplicated slices, uneven spacing, a tilted stack, or slices that differ in size,
    orientation or pixel spacing.
    """
    folder = Path(folder)
    if folder.is_file():
        return read_dicom_file(folder, max_voxels=max_voxels)
    if not folder.is_dir():
        raise DicomSeriesError("no such folder", folder)
    groups, skipped = scan_folder(folder)
    if not groups:
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = f"; it has sub-folders ({', '.join(subdirs[:5])}): open the one holding the series" if subdirs else ""
        raise DicomSeriesError(f"no DICOM images in this folder ({len(skipped)} other files){hint}", folder)
    if series_uid is None:
        images = {u: s for u, s in groups.items() if all(is_image_object(x) for x in s)}
        if images and len(images) < len(groups):
            log.info("%s: left out %d non-image DICOM object(s) when choosing the series: %s", folder,
                     len(groups) - len(images),
                     "; ".join(_describe(u, s) for u, s in groups.items() if u not in images))
            groups = images
    if series_uid is not None:
        if series_uid not in groups:
            raise DicomSeriesError(f"no series with UID {series_uid} here; found: "
                                   + "; ".join(_describe(u, s) for u, s in groups.items()), folder)
        uid = series_uid
    else:
        uid = max(groups, key=lambda u: (sum(x.frames for x in groups[u]), -_series_number(groups[u])))
    if len(groups) > 1:
        others = "; ".join(_describe(u, s) for u, s in groups.items() if u != uid)
        log.warning("%s holds %d DICOM series; opening %s. Also there: %s. Put each series in its own folder "
                    "(or pass series_uid) to open another.", folder, len(groups), _describe(uid, groups[uid]),
                    others)
    if skipped:
        log.info("%s: skipped %d files that are not DICOM images: %s", folder, len(skipped),
                 ", ".join(p.name for p in skipped[:10]))
    check_unreadable_members(skipped, uid, folder)
    slices = groups[uid]
    if len(slices) == 1:
        return read_dicom_file(slices[0].path, max_voxels=max_voxels)
    for s in slices:
        check_pixel_data(s.path, DicomSeriesError)
    if any(s.frames > 1 for s in slices):
        raise DicomSeriesError(f"the series mixes {len(slices)} files of which some hold several frames; "
                               f"SegLoop cannot stack them", folder)
    ordered, step = check_series(slices, folder, skipped)
    return _read_stack(ordered, step, folder, max_voxels)


def check_unreadable_members(skipped: list[Path], uid: str, folder: Path) -> None:
    """Refuse a series one of whose files GDCM cannot read (cut short by an interrupted
    copy, damaged): opening the rest would silently drop that slice."""
    if not uid:
        return
    for p in skipped:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True, specific_tags=["SeriesInstanceUID"])
            member = str(ds.get("SeriesInstanceUID", "")).strip() == uid
        except Exception:  # noqa: BLE001 - not DICOM at all: a file that is skipped anyway
            member = False
        if member:
            raise DicomSeriesError(f"{p.name} belongs to this series but cannot be read as an image (cut short by an "
                                   f"interrupted copy, or damaged); opening the rest would drop that slice. Re-copy "
                                   f"or re-export the series", folder)


def _series_number(slices: list[DicomSlice]) -> int:
    try:
        return int(float(slices[0].series_number))
    except ValueError:
        return 0


def check_series(slices: list[DicomSlice], folder: Path, skipped: list[Path] | None = None
                 ) -> tuple[list[DicomSlice], float]:
    """Validate a single-frame series; return it sorted along the slice normal and the
    slice step (mm). Raises :class:`DicomSeriesError` naming the offending file(s)."""
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.cols) != (first.rows, first.cols):
            raise DicomSeriesError(f"slices of one series differ in size: {s.path.name} is {s.cols}x{s.rows}, "
                                   f"{first.path.name} is {first.cols}x{first.rows}", folder)
        if s.components != first.components:
            raise DicomSeriesError(f"slices of one series differ in colour channels: {s.path.name} vs "
                                   f"{first.path.name}", folder)
    for s in slices:
        if s.orientation is None or s.position is None:
            raise DicomSeriesError(f"{s.path.name} has no ImagePositionPatient/ImageOrientationPatient, so the "
                                   f"slices cannot be put in order", folder)
    _check_orientation(first, folder)
    orientation = cast(np.ndarray, first.orientation)  # not None: every slice was checked above
    for s in slices[1:]:
        if not np.allclose(cast(np.ndarray, s.orientation), orientation, atol=1e-4, rtol=0):
            raise DicomSeriesError(f"slices of one series are oriented differently: {s.path.name} vs "
                                   f"{first.path.name} (ImageOrientationPatient "
                                   f"{_fmt(s.orientation)} vs {_fmt(first.orientation)})", folder)
        a, b = _floats(s.pixel_spacing, 2), _floats(first.pixel_spacing, 2)
        if (a is None) != (b is None) or (a is not None and b is not None and not np.allclose(a, b, atol=1e-4)):
            raise DicomSeriesError(f"slices of one series have different pixel spacing: {s.path.name} "
                                   f"({s.pixel_spacing}) vs {first.path.name} ({first.pixel_spacing})", folder)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = [cast(np.ndarray, s.position) for s in slices]  # every slice was checked above
    proj = np.array([float(p @ normal) for p in positions])
    order = np.argsort(proj, kind="stable")
    ordered = [slices[i] for i in order]
    ordered_positions = [positions[i] for i in order]
    proj = proj[order]
    gaps = np.diff(proj)
    for n, g in enumerate(gaps):
        if g < 0.01:
            a, b = ordered[n], ordered[n + 1]
            raise DicomSeriesError(f"two slices at the same position ({proj[n]:.2f} mm along the slice axis): "
                                   f"{a.path.name} and {b.path.name}. A slice is duplicated, or the series holds "
                                   f"several acquisitions (echoes, phases); keep one set of slices per folder",
                                   folder)
    step = float(gaps.min())
    tol = max(0.01, 0.02 * step)
    for n, g in enumerate(gaps):
        if abs(g - step) <= tol:
            continue
        a, b = ordered[n], ordered[n + 1]
        m = int(round(g / step))
        if m >= 2 and abs(g - m * step) <= tol * m:
            where = ", ".join(f"{proj[n] + q * step:.2f} mm" for q in range(1, min(m, 4)))
            xyz = ordered_positions[n] + step * normal
            note = f"; {len(skipped)} unreadable file(s) were skipped: {', '.join(p.name for p in skipped[:5])}" \
                if skipped else ""
            raise DicomSeriesError(
                f"{m - 1} slice(s) missing: the series jumps from {proj[n]:.2f} mm ({a.path.name}) to "
                f"{proj[n + 1]:.2f} mm ({b.path.name}) along the slice axis where slices are {step:.3g} mm apart; "
                f"the missing slice should be at {where} (first at x, y, z = {_fmt(xyz)} mm). Re-export the "
                f"complete series{note}", folder)
        raise DicomSeriesError(f"uneven slice spacing: {g:.3g} mm between {a.path.name} and {b.path.name}, "
                               f"{step:.3g} mm elsewhere; SegLoop will not stretch the slices onto a regular grid",
                               folder)
    base = ordered_positions[0]
    in_plane = max(float(np.linalg.norm((pos - base) - (p - proj[0]) * normal))
                   for pos, p in zip(ordered_positions, proj))
    ps = _floats(first.pixel_spacing, 2)
    if in_plane > max(1e-3, 0.1 * (float(ps.min()) if ps is not None else 1.0)):
        angle = float(np.degrees(np.arctan2(in_plane, proj[-1] - proj[0])))
        raise DicomSeriesError(f"the slices are not stacked straight along the slice normal (tilted by about "
                               f"{angle:.1f} degrees, e.g. a gantry tilt); SegLoop cannot represent this geometry "
                               f"exactly. Resample the series first (e.g. dcm2niix or 3D Slicer)", folder)
    return ordered, (proj[-1] - proj[0]) / (len(proj) - 1)


def _check_orientation(s: DicomSlice, where: Path) -> None:
    """ImageOrientationPatient: two unit, orthogonal cosines; PixelSpacing: finite, positive."""
    assert s.orientation is not None  # callers check it first
    row, col = s.orientation[:3], s.orientation[3:]
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if not (abs(nr - 1) < 0.01 and abs(nc - 1) < 0.01 and abs(float(row @ col)) < 0.01):
        raise DicomSeriesError(f"{s.path.name} has a degenerate ImageOrientationPatient {_fmt(s.orientation)}: the row "
                               f"and column cosines must be two perpendicular unit vectors; the header is damaged",
                               where)
    if s.pixel_spacing:
        ps = _floats(s.pixel_spacing, 2)
        if ps is None or not np.all(ps > 0):
            raise DicomSeriesError(f"{s.path.name} has an invalid PixelSpacing {s.pixel_spacing!r}: it must be two "
                                   f"finite, positive numbers (mm); the header is damaged", where)


def _fmt(v: np.ndarray | None) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")" if v is not None else "(none)"


def _read_stack(ordered: list[DicomSlice], step: float, folder: Path, max_voxels: int) -> Volume:
    first = ordered[0]
    check_budget(folder, (first.cols, first.rows, len(ordered)),
                 max(4, component_bytes(first.pixel_id)) * first.components, max_voxels)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in ordered])
    if len({s.rescale for s in ordered}) > 1 and first.components == 1:
        reader.SetOutputPixelType(sitk.sitkFloat32)  # per-slice rescale: keep every slice exact
    try:
        image = reader.Execute()
    except ITK_ERRORS as exc:
        raise DicomSeriesError(f"cannot read the series' pixel data: {short_reason(exc)}", folder) from None
    array = array_from_itk(image)
    if array.ndim == 4 and array.shape[-1] == 4:
        array = np.ascontiguousarray(array[..., :3])
    array = _narrow(array)
    # check_series refused a slice without ImageOrientationPatient or ImagePositionPatient
    orientation, position = cast(np.ndarray, first.orientation), cast(np.ndarray, first.position)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    sx, sy = image.GetSpacing()[:2]
    itk_dir = np.asarray(image.GetDirection()).reshape(3, 3)
    if not (np.allclose(itk_dir[:, 0], row, atol=1e-4) and np.allclose(itk_dir[:, 1], col, atol=1e-4)):
        raise DicomSeriesError("the reader's in-plane axes disagree with ImageOrientationPatient", folder)
    direction = np.stack([normal, col / np.linalg.norm(col), row / np.linalg.norm(row)], axis=1)
    return Volume(array=array, spacing=(float(step), float(sy), float(sx)),
                  origin=float3(position),
                  direction=direction, modality=_MODALITIES.get(first.modality, "unknown"), source_path=folder)


def _narrow(array: np.ndarray) -> np.ndarray:
    """GDCM returns rescaled CT as int32; store it as int16/uint16 when the values fit."""
    if array.dtype not in (np.int32, np.uint32, np.int64) or array.size == 0:
        return array
    lo, hi = int(array.min()), int(array.max())
    for dtype in (np.int16, np.uint16):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return array.astype(dtype)
    return array


def read_dicom_file(path: str | Path, *, max_voxels: int = 2_000_000_000) -> Volume:
    """One DICOM file as a volume: a single slice opens as shape ``(1, H, W)``
    (``(1, H, W, 3)`` for colour), with the slice thickness as its k spacing; a
    multi-frame file opens with the geometry GDCM derives for its frames."""
    path = Path(path)
    check_input_file(path)
    got = read_slice_header(path)
    if got is None:
        raise UnsupportedImageError("not a DICOM image GDCM can read (damaged, or a DICOM object without pixels "
                                    "such as a report)", path)
    info, reader = got
    check_pixel_data(path, InvalidVoxelDataError)
    if info.orientation is not None:
        _check_orientation(info, path)
    array, spacing, origin, direction, _ = read_itk_volume(path, max_voxels=max_voxels, reader=reader)
    if info.frames == 1:
        spacing = (info.between or info.thickness or 1.0, spacing[1], spacing[2])
    return Volume(array=_narrow(array), spacing=spacing, origin=origin, direction=direction,
                  modality=_MODALITIES.get(info.modality, "photo" if array.ndim == 4 else "unknown"),
                  source_path=path)


def check_pixel_data(path: Path, error: type[SegLoopError] = InvalidVoxelDataError) -> None:
    """Refuse an uncompressed DICOM file whose PixelData element is shorter than its header
    (Rows x Columns x NumberOfFrames x SamplesPerPixel x BitsAllocated) says; GDCM would
    read such a file without complaint, padding the missing voxels. The PixelData value is
    not read (only its length). Compressed (encapsulated) pixel data is left to GDCM."""
    try:
        ds = pydicom.dcmread(path, defer_size=1024, force=True)
    except Exception:  # noqa: BLE001 - pydicom cannot parse what GDCM could: let GDCM decide
        return
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    try:
        if ts is not None and ts.is_encapsulated:
            return
    except ValueError:  # a private or unknown transfer syntax: left to GDCM
        return
    try:
        elem = ds.get_item(0x7FE00010, keep_deferred=True)
    except Exception:  # noqa: BLE001
        return
    if elem is None:
        return
    length = _stored_length(elem, path, ts)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return
    if length == 0xFFFFFFFF:
        if ts is None:
            return  # no transfer syntax to judge by: encapsulated data is left to GDCM
        raise error(f"the pixel data has an undefined length but the transfer syntax "
                    f"({ts or 'none'}) is uncompressed; the file is damaged. Re-export it", path)
    need = (rows * cols * frames * samples * bits + 7) // 8
    if length < need:
        raise error(f"the pixel data is truncated: PixelData holds {length} bytes but "
                    f"{cols}x{rows} pixels x {frames} frame(s) x {samples} sample(s) x {bits} bits need {need}; "
                    f"the file is damaged. Re-export it", path)


_DEFLATED_TS = "1.2.840.10008.1.2.1.99"


def _stored_length(elem: object, path: Path, ts: object) -> int:
    """Bytes of PixelData really in the file: the declared length, less what a file cut
    short (an interrupted copy) lacks; 0xFFFFFFFF (undefined) is passed through."""
    length = getattr(elem, "length", None)
    value = getattr(elem, "value", None)
    if value is not None:
        return min(len(value), length) if isinstance(length, int) and length != 0xFFFFFFFF else len(value)
    if length is None:
        return 0
    tell = getattr(elem, "value_tell", None)
    if length == 0xFFFFFFFF or tell is None or str(ts or "") == _DEFLATED_TS:
        return int(length)
    try:
        return max(0, min(int(length), path.stat().st_size - int(tell)))
    except OSError:
        return int(length)
