"""DICOM Segmentation objects (SEG) read as a label map on the CT/MR series they were made on.

A SEG (written by dcmqi, 3D Slicer, highdicom, ...) stores one binary frame per segment and
source slice. :func:`read_dicom_seg` places those frames on the voxels of the open scan:

* the scan must be the DICOM series the SEG references (same Frame of Reference, the
  referenced series, and every frame's source image one of the series' slices); any
  other scan is refused, naming the series the SEG wants;
* each frame is put on the slice its ``SourceImageSequence`` names (read with highdicom's
  ``get_pixels_by_source_instance``), and the frame's own ``ImagePositionPatient``,
  orientation and pixel spacing must agree with that slice: nothing is resampled;
* segment ``n`` becomes label value ``n`` (never renumbered), named by its SegmentLabel
  and coloured by its RecommendedDisplayCIELabValue;
* overlapping segments are refused (a label map holds one label per voxel), a FRACTIONAL
  (probability) SEG is refused rather than thresholded, an empty segment keeps its label
  and is reported in :attr:`ImportedLabelMap.warnings`.

:func:`dicom_object_kind` tells a SEG or RTSTRUCT file from a DICOM image;
:func:`scan_series` finds the open scan's own DICOM slices (shared with
:mod:`unet_engine.io.rtstruct`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_engine.errors import GeometryMismatchError, SegLoopError, UnsupportedImageError
from unet_engine.io.checks import is_dicom_file
from unet_engine.io.label_descriptions import LabelDescription, clean_name, default_colour
from unet_engine.volume import Volume, int3

log = logging.getLogger(__name__)

#: how far (mm) a DICOM position may sit from a voxel centre and still be that voxel
POSITION_TOL_MM = 0.05

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass
class ImportedLabelMap:
    """A label map read from a DICOM SEG or RTSTRUCT onto a scan's grid."""

    array: np.ndarray  # uint8/uint16 [k, j, i]
    labels: tuple[LabelDescription, ...]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ScanSeries:
    """The DICOM slices of the open scan: series and frame of reference, SOP UID -> k."""

    series_uid: str
    frame_of_reference: str
    k_of_sop: dict[str, int]
    folder: Path


def dicom_object_kind(path: Path) -> str | None:
    """``"SEG"`` or ``"RTSTRUCT"`` for such a DICOM file, else None (images, other files)."""
    if not path.is_file() or not is_dicom_file(path):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - a damaged file is reported by the image reader
        return None
    sop, modality = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", "")).upper()
    if sop == SEG_SOP_CLASS or modality == "SEG":
        return "SEG"
    if sop == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return "RTSTRUCT"
    return None


def scan_series(like: Volume, path: Path, what: str) -> ScanSeries:
    """The DICOM series ``like`` was read from, with the k index of each of its slices.

    ``path`` (the SEG/RTSTRUCT) and ``what`` name the object in error messages.
    """
    import pydicom

    src = Path(like.source_path) if like.source_path is not None else None
    if src is None or not src.exists() or not (src.is_dir() or is_dicom_file(src)):
        raise SegLoopError(f"a DICOM {what} can only be opened over the DICOM series it was made on; open that "
                           f"series (its folder) first, then this file", path)
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    groups: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=[
                "SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient", "Modality"])
        except Exception:  # noqa: BLE001 - not DICOM: not one of the scan's slices
            continue
        if str(ds.get("Modality", "")).upper() in ("SEG", "RTSTRUCT") or "ImagePositionPatient" not in ds:
            continue
        try:
            pos = np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        except (TypeError, ValueError):
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(
            (str(ds.get("SOPInstanceUID", "")), str(ds.get("FrameOfReferenceUID", "")), pos))
    for uid, slices in groups.items():
        k_of = _on_grid(like, [s[2] for s in slices])
        if k_of is not None and len(set(k_of)) == like.shape[0] == len(slices):
            return ScanSeries(uid, slices[0][1], {s[0]: k for s, k in zip(slices, k_of)}, src if src.is_dir()
                              else src.parent)
    raise SegLoopError(f"the DICOM slices of the open scan were not found in {src}, so this {what} cannot be "
                       f"matched to them; open the DICOM series folder it was made on, then this file", path)


def _on_grid(like: Volume, positions: list[np.ndarray]) -> list[int] | None:
    """k of each slice position when every one is the corner voxel of a slice of ``like``."""
    ks = []
    for pos in positions:
        kji = like.world_to_voxel(pos)
        k = int(round(float(kji[0])))
        if not 0 <= k < like.shape[0]:
            return None
        if np.linalg.norm(like.voxel_to_world((k, 0, 0)) - pos) > POSITION_TOL_MM:
            return None
        ks.append(k)
    return ks


def label_dtype(max_value: int) -> type[np.uint8] | type[np.uint16]:
    return np.uint8 if max_value < 256 else np.uint16


def read_dicom_seg(path: str | Path, like: Volume) -> ImportedLabelMap:
    """Read the DICOM SEG at ``path`` onto the voxels of ``like`` (see module doc).

    Raises :class:`SegLoopError` (naming the file and what to do) for a SEG of another
    series, a fractional SEG, overlapping segments, or frames that do not lie on the scan's
    slices.
    """
    import highdicom as hd

    path = Path(path).expanduser()
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001 - highdicom raises many types for bad files
        raise UnsupportedImageError(f"not a DICOM SEG that can be read ({str(exc).splitlines()[0][:200]})",
                                    path) from None
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        raise SegLoopError("this DICOM SEG is FRACTIONAL (a probability or occupancy per voxel), not a label map; "
                           "SegLoop will not threshold it for you. Export a BINARY SEG (choose the threshold "
                           "in the tool that made it) and open that", path)
    series = scan_series(like, path, "SEG")
    ref_series = {str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])}
    if ref_series and series.series_uid not in ref_series:
        raise SegLoopError(f"this SEG was made on another series (UID {', '.join(sorted(ref_series))}), not on the "
                           f"open scan (series UID {series.series_uid}); open the series it references, then this "
                           f"SEG", path)
    for_uid = str(seg.get("FrameOfReferenceUID", ""))
    if for_uid != series.frame_of_reference:
        raise SegLoopError(f"this SEG's Frame of Reference ({for_uid or 'none'}) is not the open scan's "
                           f"({series.frame_of_reference}); it belongs to another scan. Open the series it was made "
                           f"on, then this SEG", path)
    frame_refs = _frame_sources(seg)
    if not frame_refs:
        raise SegLoopError("this SEG does not name exactly one source image for each frame (its "
                           "SourceImageSequence), so SegLoop cannot place its frames on the scan's slices without "
                           "guessing; export it again with references to the source images", path)
    foreign = sorted({uid for uid, _ in frame_refs} - set(series.k_of_sop))
    if foreign:
        raise SegLoopError(f"{len(foreign)} of this SEG's frames were drawn on images that are not in the open "
                           f"series (e.g. SOP Instance UID {foreign[0]}); it belongs to another series. Open the "
                           f"series it was made on, then this SEG", path)
    _check_frame_geometry(seg, like, series, frame_refs, path)
    numbers = [int(n) for n in seg.segment_numbers]
    sops = sorted(series.k_of_sop, key=series.k_of_sop.__getitem__)
    try:
        stack = seg.get_pixels_by_source_instance(source_sop_instance_uids=sops, segment_numbers=numbers,
                                                  assert_missing_frames_are_empty=True, rescale_fractional=False,
                                                  ignore_spatial_locations=True,  # checked above
                                                  skip_overlap_checks=True, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        raise SegLoopError(f"cannot read this SEG's frames ({str(exc).splitlines()[0][:200]})", path) from None
    stack = stack.astype(bool)  # (k, rows, cols, segments)
    labels, warnings = _segment_labels(seg, numbers, stack, path)
    _refuse_overlap(stack, labels, path, "SEG", "segments")
    out = np.zeros(like.shape, dtype=label_dtype(max(numbers, default=0)))
    for n, number in enumerate(numbers):
        out[stack[..., n]] = number
    return ImportedLabelMap(out, labels, warnings)


def _frame_sources(seg) -> list[tuple[str, int]]:
    """``(source SOP UID, frame index)`` of every frame; empty when any frame names none."""
    out = []
    for f, item in enumerate(seg.get("PerFrameFunctionalGroupsSequence", [])):
        uids = [str(src.ReferencedSOPInstanceUID) for der in item.get("DerivationImageSequence", [])
                for src in der.get("SourceImageSequence", [])]
        if len(uids) != 1:
            return []
        out.append((uids[0], f))
    return out


def _check_frame_geometry(seg, like: Volume, series: ScanSeries, frame_refs: list[tuple[str, int]],
                          path: Path) -> None:
    """Every frame lies exactly on the slice it references: size, orientation, spacing, position."""
    if (int(seg.Rows), int(seg.Columns)) != like.shape[1:]:
        raise GeometryMismatchError(f"the SEG's frames are {seg.Columns}x{seg.Rows} pixels, the scan's slices "
                                    f"{like.shape[2]}x{like.shape[1]}; open the series it was made on", path)
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    per = seg.PerFrameFunctionalGroupsSequence

    def group(f: int, name: str):
        for g in (per[f], shared):
            if g is not None and name in g:
                return g.get(name)[0]
        raise GeometryMismatchError(f"frame {f + 1} has no {name}, so its position cannot be checked", path)

    row, col = like.direction[:, 2], like.direction[:, 1]
    for sop, f in frame_refs:
        iop = np.array([float(v) for v in group(f, "PlaneOrientationSequence").ImageOrientationPatient])
        ps = np.array([float(v) for v in group(f, "PixelMeasuresSequence").PixelSpacing])
        ipp = np.array([float(v) for v in group(f, "PlanePositionSequence").ImagePositionPatient])
        k = series.k_of_sop[sop]
        if not (np.allclose(iop[:3], row, atol=1e-4) and np.allclose(iop[3:], col, atol=1e-4)):
            raise GeometryMismatchError(f"frame {f + 1} is oriented differently from the scan's slices; it cannot "
                                        f"be placed without resampling", path)
        if not np.allclose(ps, (like.spacing[1], like.spacing[2]), atol=1e-4, rtol=1e-5):
            raise GeometryMismatchError(f"frame {f + 1} has pixel spacing {ps.tolist()} mm, the scan "
                                        f"{[like.spacing[1], like.spacing[2]]} mm", path)
        where = like.voxel_to_world((k, 0, 0))
        if np.linalg.norm(where - ipp) > POSITION_TOL_MM:
            raise GeometryMismatchError(f"frame {f + 1} sits at {ipp.tolist()} mm but the slice it references "
                                        f"(k = {k}) is at {np.round(where, 3).tolist()} mm", path)


def read_dicom_seg_labels(path: str | Path) -> tuple[LabelDescription, ...]:
    """Names and colours of the labels :func:`read_dicom_seg` gives the segments (no scan needed)."""
    import highdicom as hd

    path = Path(path).expanduser()
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001
        raise UnsupportedImageError(f"not a DICOM SEG that can be read ({str(exc).splitlines()[0][:200]})",
                                    path) from None
    return _segment_labels(seg, [int(n) for n in seg.segment_numbers], None, path)[0]


def _segment_labels(seg, numbers: list[int], stack: np.ndarray | None, path: Path
                    ) -> tuple[tuple[LabelDescription, ...], list[str]]:
    import highdicom as hd

    labels, warnings = [], []
    for n, number in enumerate(numbers):
        item = seg.get_segment_description(number)
        name = clean_name(str(getattr(item, "SegmentLabel", "") or "")).strip() or f"Segment {number}"
        colour = default_colour(number)
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            try:
                colour = int3(hd.color.CIELabColor.from_dicom_value(list(lab)).to_rgb(clip=True))
            except Exception:  # noqa: BLE001 - a bad colour is not worth refusing the mask
                pass
        labels.append(LabelDescription(number, name, colour))
        if stack is not None and not stack[..., n].any():
            warnings.append(f"{path}: segment {number} {name!r} is empty on this scan; its label is kept")
    for w in warnings:
        log.warning("%s", w)
    return tuple(labels), warnings


def _refuse_overlap(stack: np.ndarray, labels: tuple[LabelDescription, ...], path: Path, what: str,
                    noun: str) -> None:
    """Refuse ``stack`` (..., n) when a voxel is in two of its layers."""
    if stack.shape[-1] < 2 or not (stack.sum(axis=-1, dtype=np.int32) > 1).any():
        return
    for a in range(stack.shape[-1]):
        for b in range(a + 1, stack.shape[-1]):
            both = int(np.count_nonzero(stack[..., a] & stack[..., b]))
            if both:
                raise SegLoopError(
                    f"{noun} {labels[a].name!r} and {labels[b].name!r} of this {what} overlap on {both} voxels; a "
                    f"label map holds one label per voxel, so SegLoop will not choose between them. Export the "
                    f"overlapping {noun} to separate files (or make them disjoint) and open each", path)
