"""DICOM RT Structure Sets (RTSTRUCT) imported as a label map on their CT series.

Each ROI becomes one label, numbered ``1..N`` in the order of the StructureSetROISequence,
named by its ROIName and coloured by its ROIDisplayColor. Its CLOSED_PLANAR contours are
rasterised slice by slice: a voxel belongs to the ROI when its centre lies inside the
contours of its slice by the even-odd rule, so a contour drawn inside another one of the
same ROI is a hole (the usual reading of nested RTSTRUCT contours). POINT and OPEN_PLANAR
contours enclose no area and are skipped with a warning.

The structure set must belong to the open scan: every image its contours reference must be
one of the scan's slices (else the file is refused, as for rt-utils' broken test files), and
the referenced series, when named, must be the scan's. Each contour must lie in one of the
scan's slice planes; nothing is resampled or interpolated between slices. A Frame of
Reference that differs from the scan's while every referenced image is the scan's own is
reported as a warning. Overlapping ROIs (e.g. a body outline around the organs) are refused:
a label map holds one label per voxel.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from unet_engine.io.dicom_seg import (POSITION_TOL_MM, ImportedLabelMap, _refuse_overlap, label_dtype,
                                   scan_series)
from unet_engine.errors import GeometryMismatchError, SegLoopError, UnsupportedImageError
from unet_engine.io.label_descriptions import LabelDescription, clean_name, default_colour
from unet_engine.volume import Volume, int3

log = logging.getLogger(__name__)


def _read_dataset(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise UnsupportedImageError(f"not a DICOM file that can be read ({str(exc).splitlines()[0][:200]})",
                                    path) from None
    if str(ds.get("Modality", "")).upper() != "RTSTRUCT":
        raise UnsupportedImageError(f"not an RT Structure Set (Modality {ds.get('Modality', 'missing')})", path)
    return ds


def _roi_labels(ds) -> tuple[list[int], tuple[LabelDescription, ...]]:
    """ROI numbers in file order and their labels 1..N (names, colours)."""
    colours: dict[int, tuple[int, int, int]] = {}
    for rc in ds.get("ROIContourSequence", []):
        col = rc.get("ROIDisplayColor")
        if col is not None and len(col) == 3:
            try:
                colours[int(rc.ReferencedROINumber)] = int3(max(0, min(255, int(c))) for c in col)
            except (TypeError, ValueError):
                pass
    numbers, labels = [], []
    for value, roi in enumerate(ds.get("StructureSetROISequence", []), start=1):
        number = int(roi.ROINumber)
        numbers.append(number)
        name = clean_name(str(roi.get("ROIName", "") or "")).strip() or f"ROI {number}"
        labels.append(LabelDescription(value, name, colours.get(number, default_colour(value))))
    return numbers, tuple(labels)


def read_rtstruct_labels(path: str | Path) -> tuple[LabelDescription, ...]:
    """Names and colours of the labels :func:`read_rtstruct` gives the ROIs (no scan needed)."""
    return _roi_labels(_read_dataset(Path(path).expanduser()))[1]


def read_rtstruct(path: str | Path, like: Volume) -> ImportedLabelMap:
    """Rasterise the RTSTRUCT at ``path`` onto the voxels of ``like`` (see module doc).

    Raises :class:`SegLoopError` naming the file when it references images outside the open
    series, has contours off the scan's slices, or ROIs that overlap.
    """
    path = Path(path).expanduser()
    ds = _read_dataset(path)
    series = scan_series(like, path, "RTSTRUCT")
    numbers, labels = _roi_labels(ds)
    if not numbers:
        raise SegLoopError("this RT Structure Set holds no ROIs", path)
    warnings: list[str] = []
    ref_series = {str(s.SeriesInstanceUID) for fr in ds.get("ReferencedFrameOfReferenceSequence", [])
                  for st in fr.get("RTReferencedStudySequence", []) for s in st.get("RTReferencedSeriesSequence", [])}
    if ref_series and series.series_uid not in ref_series:
        raise SegLoopError(f"this RTSTRUCT was drawn on another series (UID {', '.join(sorted(ref_series))}), not on "
                           f"the open scan (series UID {series.series_uid}); open the series it references, then "
                           f"this file", path)
    contours = {int(rc.ReferencedROINumber): list(rc.get("ContourSequence", []))
                for rc in ds.get("ROIContourSequence", [])}
    referenced = {str(img.ReferencedSOPInstanceUID) for cs in contours.values() for c in cs
                  for img in c.get("ContourImageSequence", [])}
    foreign = sorted(referenced - set(series.k_of_sop))
    if foreign:
        raise SegLoopError(f"its contours reference {len(foreign)} image(s) that are not in the open series (e.g. "
                           f"SOP Instance UID {foreign[0]}): the structure set is broken or belongs to another "
                           f"series. Open the complete series it was drawn on; SegLoop will not place contours on "
                           f"images it cannot see", path)
    for_uids = {str(roi.get("ReferencedFrameOfReferenceUID", "")) for roi in ds.get("StructureSetROISequence", [])}
    for_uids.discard("")
    if for_uids and for_uids != {series.frame_of_reference}:
        if not referenced:
            raise SegLoopError(f"this RTSTRUCT's Frame of Reference ({', '.join(sorted(for_uids))}) is not the open "
                               f"scan's ({series.frame_of_reference}) and its contours name no images; it belongs "
                               f"to another scan. Open the series it was drawn on, then this file", path)
        warnings.append(f"{path}: the Frame of Reference UID differs from the scan's, but every image the contours "
                        f"reference is a slice of this scan; the contours are placed on it")
    stack = np.zeros(like.shape + (len(numbers),), dtype=bool)
    for n, (number, label) in enumerate(zip(numbers, labels)):
        skipped = _rasterise_roi(contours.get(number, []), like, stack[..., n], path, label.name)
        if skipped:
            warnings.append(f"{path}: ROI {label.name!r}: {skipped} contour(s) of type POINT/OPEN_PLANAR enclose "
                            f"no area and were skipped")
        if not stack[..., n].any():
            warnings.append(f"{path}: ROI {label.name!r} covers no voxel of this scan; its label is kept")
    _refuse_overlap(stack, labels, path, "RTSTRUCT", "ROIs")
    out = np.zeros(like.shape, dtype=label_dtype(len(labels)))
    for n, label in enumerate(labels):
        out[stack[..., n]] = label.value
    for w in warnings:
        log.warning("%s", w)
    return ImportedLabelMap(out, labels, warnings)


def _rasterise_roi(contours: list, like: Volume, target: np.ndarray, path: Path, name: str) -> int:
    """Fill ``target`` (k, j, i) with the ROI's closed contours (even-odd per slice);
    returns how many non-area contours were skipped."""
    skipped = 0
    parity: dict[int, np.ndarray] = {}
    for c in contours:
        kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        if kind != "CLOSED_PLANAR":
            skipped += 1
            continue
        pts = np.asarray([float(v) for v in c.ContourData], dtype=np.float64)
        if pts.size < 9 or pts.size % 3:
            raise SegLoopError(f"ROI {name!r} has a contour with {pts.size} coordinates; a closed contour needs at "
                               f"least 3 points (x, y, z each)", path)
        kji = like.world_to_voxel(pts.reshape(-1, 3))
        k = int(round(float(np.median(kji[:, 0]))))
        off = np.abs(kji[:, 0] - k) * like.spacing[0]
        if float(off.max()) > max(POSITION_TOL_MM, 0.01 * like.spacing[0]):
            raise GeometryMismatchError(f"ROI {name!r} has a contour that does not lie in one of the scan's slice "
                                        f"planes (up to {float(off.max()):.2f} mm off); SegLoop does not resample "
                                        f"contours", path)
        if not 0 <= k < like.shape[0]:
            raise GeometryMismatchError(f"ROI {name!r} has a contour outside the scan (slice {k} of "
                                        f"{like.shape[0]})", path)
        toggles = parity.setdefault(k, np.zeros((like.shape[1], like.shape[2] + 1), dtype=np.uint8))
        _toggle_polygon(toggles, kji[:, 1], kji[:, 2])
    for k, toggles in parity.items():
        target[k] = (np.cumsum(toggles, axis=1, dtype=np.uint32)[:, :-1] % 2).astype(bool)
    return skipped


def _toggle_polygon(toggles: np.ndarray, js: np.ndarray, is_: np.ndarray) -> None:
    """Scanline even-odd fill: for every row j the polygon's edges cross (half-open rule),
    flip the parity of every pixel centre at or right of the crossing."""
    nj, ni1 = toggles.shape
    j0, i0 = js, is_
    j1, i1 = np.roll(js, -1), np.roll(is_, -1)
    for a_j, a_i, b_j, b_i in zip(j0, i0, j1, i1):
        if a_j == b_j:
            continue  # horizontal edge: crosses no row centre line under the half-open rule
        lo, hi = (a_j, b_j) if a_j < b_j else (b_j, a_j)
        rows = np.arange(max(int(np.ceil(lo)), 0), min(int(np.ceil(hi)), nj))  # lo <= j < hi
        if rows.size == 0:
            continue
        x = a_i + (rows - a_j) * (b_i - a_i) / (b_j - a_j)
        cols = np.clip(np.ceil(x), 0, ni1 - 1).astype(np.int64)
        np.bitwise_xor.at(toggles, (rows, cols), 1)
