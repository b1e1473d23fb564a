"""Write a label map as a DICOM Segmentation object (SEG) on the DICOM series it was drawn on.

:func:`write_dicom_seg` is the write side of :mod:`unet_engine.io.dicom_seg` (issue 16):

* the scan must have been opened from a DICOM series; its slices are found with
  :func:`unet_engine.io.dicom_seg.scan_series` and read with pydicom as the SEG's source
  images (headers only), so the SEG references that series (ReferencedSeriesSequence),
  its Frame of Reference, and each frame names the slice it lies on;
* label value ``n`` is written as segment ``n`` (BINARY, algorithm type MANUAL), named by
  its label name (SegmentLabel) and coloured by its colour (RecommendedDisplayCIELabValue),
  so :func:`unet_engine.io.dicom_seg.read_dicom_seg` reads back the same voxel values;
* values are never renumbered. DICOM wants segment numbers 1..N with no gap, so when the
  mask's values have gaps (e.g. 1 and 3) the missing numbers are written as *empty*
  segments (named from ``labels`` or "Label n") and reported in the returned warnings;
  more than :data:`MAX_EMPTY_SEGMENTS` of them (e.g. values 1 and 5000) is refused, naming
  the values, rather than writing thousands of empty segments;
* a new SeriesInstanceUID and SOPInstanceUID, SeriesDescription "SegLoop segmentation",
  Manufacturer "SegLoop"; written atomically (:func:`unet_engine.io.atomic.atomic_path`),
  never over one of the series' own files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_engine.io.atomic import atomic_path
from unet_engine.io.dicom_seg import scan_series
from unet_engine.errors import GeometryMismatchError, SegLoopError, SourceOverwriteError
from unet_engine.io.checks import is_dicom_file, label_array
from unet_engine.io.label_descriptions import LabelDescription, clean_name, default_colour
from unet_engine.volume import Volume, int3

log = logging.getLogger(__name__)

NEEDS_DICOM = "DICOM SEG needs a scan opened from a DICOM series; save as .nii.gz or .seg.nrrd"
#: most empty segments written to fill gaps between label values (see module doc)
MAX_EMPTY_SEGMENTS = 64
SERIES_DESCRIPTION = "SegLoop segmentation"
MANUFACTURER = "SegLoop"
#: SegmentLabel is a DICOM LO: at most 64 characters
_LO_MAX = 64

#: a label: a name, a ``(name, rgb)`` pair, or a :class:`LabelDescription`
SegLabels = Mapping[int, "str | tuple[str, tuple[int, int, int]]"] | Iterable[LabelDescription]


@dataclass
class WrittenSeg:
    path: Path
    segment_numbers: list[int]
    warnings: list[str] = field(default_factory=list)


def _descriptions(labels: SegLabels | None) -> dict[int, LabelDescription]:
    if labels is None:
        return {}
    out: dict[int, LabelDescription] = {}
    if isinstance(labels, Mapping):
        for value, entry in labels.items():
            v = int(value)
            if isinstance(entry, LabelDescription):
                out[v] = entry
            elif isinstance(entry, str):
                out[v] = LabelDescription(v, entry, default_colour(v))
            else:
                name, rgb = entry
                out[v] = LabelDescription(v, str(name), int3(rgb))
    else:
        for d in labels:
            out[int(d.value)] = d
    return out


def _source_datasets(like: Volume, target: Path) -> tuple[list, list[Path]]:
    """The open series' slices (pydicom headers, k order) and their files."""
    import pydicom

    src = Path(like.source_path) if like.source_path is not None else None
    if src is None or not src.exists() or not (src.is_dir() or is_dicom_file(src)):
        raise SegLoopError(NEEDS_DICOM, target)
    try:
        series = scan_series(like, target, "SEG")
    except SegLoopError as exc:
        raise SegLoopError(f"{NEEDS_DICOM} (the slices of the open scan were not found in {src}: "
                           f"{exc.args[0] if exc.args else exc})", target) from None
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    found: dict[int, tuple] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: not one of the slices
            continue
        if str(ds.get("SeriesInstanceUID", "")) != series.series_uid:
            continue
        k = series.k_of_sop.get(str(ds.get("SOPInstanceUID", "")))
        if k is not None and k not in found:
            if not ds.get("SpecificCharacterSet"):  # an empty value: highdicom wants one or none
                if "SpecificCharacterSet" in ds:
                    del ds.SpecificCharacterSet
            found[k] = (ds, f)
    if sorted(found) != list(range(like.shape[0])):
        raise SegLoopError(f"{NEEDS_DICOM} (only {len(found)} of the scan's {like.shape[0]} slices were found in "
                           f"{src})", target)
    ordered = [found[k] for k in range(like.shape[0])]
    return [d for d, _ in ordered], [f for _, f in ordered]


def _check_slices(datasets: list, like: Volume, target: Path) -> None:
    """Each slice's rows/columns and orientation are the mask's j/i axes: no resampling."""
    row, col = like.direction[:, 2], like.direction[:, 1]
    for ds in datasets:
        if (int(ds.Rows), int(ds.Columns)) != like.shape[1:]:
            raise GeometryMismatchError(f"the DICOM slices are {ds.Columns}x{ds.Rows} pixels, the mask's slices "
                                        f"{like.shape[2]}x{like.shape[1]}; {NEEDS_DICOM}", target)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        if not (np.allclose(iop[:3], row, atol=1e-4) and np.allclose(iop[3:], col, atol=1e-4)):
            raise GeometryMismatchError("the scan's axes are not the DICOM slices' rows and columns, so the mask "
                                        "cannot be written on them without resampling; save as .nii.gz or "
                                        ".seg.nrrd", target)


def write_dicom_seg(mask: np.ndarray, like: Volume, path: str | Path, *,
                    labels: SegLabels | None = None) -> WrittenSeg:
    """Write ``mask`` (``[k, j, i]`` on ``like``) as a BINARY DICOM SEG at ``path`` (see module doc).

    ``labels``: ``{value: name}``, ``{value: (name, (r, g, b))}`` or :class:`LabelDescription`
    entries; values without one are named "Label n" with the default colour. Raises
    :class:`SegLoopError` (the file named) when the scan was not opened from a DICOM series,
    the mask is empty, or its values leave too many gaps; :class:`SourceOverwriteError`
    when ``path`` is one of the series' files.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    target = Path(path).expanduser()
    arr = np.asarray(mask)
    if tuple(arr.shape) != like.shape:
        raise GeometryMismatchError(f"the mask's shape {tuple(arr.shape)} does not match the scan's {like.shape} "
                                    f"(k, j, i)", target)
    arr = label_array(arr, target, "mask")
    datasets, files = _source_datasets(like, target)
    if any(target.resolve() == f.resolve() for f in files) or (target.exists() and is_dicom_file(target) and any(
            target.samefile(f) for f in files)):
        raise SourceOverwriteError("refusing to overwrite one of the scan's own DICOM files; save the mask under "
                                   "another name", target)
    _check_slices(datasets, like, target)
    present = [int(v) for v in np.unique(arr) if v != 0]
    if not present:
        raise SegLoopError("the mask is empty (no labelled voxel), so there is no segment to write as DICOM SEG; "
                           "draw a label first, or save as .nii.gz or .seg.nrrd", target)
    gaps = sorted(set(range(1, present[-1] + 1)) - set(present))
    if len(gaps) > MAX_EMPTY_SEGMENTS:
        raise SegLoopError(f"DICOM SEG numbers its segments 1, 2, 3... without gaps, and SegLoop keeps label values "
                           f"as segment numbers; this mask's values ({', '.join(map(str, present[:10]))}"
                           f"{'...' if len(present) > 10 else ''}) would need {len(gaps)} empty segments. Renumber "
                           f"the labels 1..{len(present)} first, or save as .nii.gz or .seg.nrrd", target)
    named = _descriptions(labels)
    warnings = []
    if gaps:
        warnings.append(f"{target}: label values {', '.join(map(str, gaps))} are not in the mask; they are written as "
                        f"empty segments so that every other label keeps its value as its segment number")
    numbers = list(range(1, present[-1] + 1))
    descriptions = []
    for n in numbers:
        d = named.get(n)
        name = (clean_name(d.name).strip() if d is not None else "") or f"Label {n}"
        rgb = d.colour if d is not None else default_colour(n)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=name[:_LO_MAX], segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in rgb))))
    try:
        from importlib.metadata import version as package_version

        version = package_version("segloop")
    except Exception:  # noqa: BLE001 - not installed as a package (a source checkout)
        version = "0"
    dtype = np.uint8 if present[-1] < 256 else np.uint16
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=arr.astype(dtype, copy=False),  # a label map: value = segment
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=int(datasets[0].get("SeriesNumber") or 0) + 1000,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
            manufacturer_model_name="SegLoop", software_versions=str(version), device_serial_number="0",
            series_description=SERIES_DESCRIPTION, content_label="SEGLOOP", omit_empty_frames=True)
    except Exception as exc:  # noqa: BLE001 - highdicom raises ValueError/TypeError for what it refuses
        raise SegLoopError(f"highdicom could not build a DICOM SEG on this series "
                           f"({str(exc).splitlines()[0][:200]}); save as .nii.gz or .seg.nrrd", target) from None
    with atomic_path(target) as tmp:
        seg.save_as(tmp)
    for w in warnings:
        log.warning("%s", w)
    return WrittenSeg(target, numbers, warnings)
