"""The functions the GUI runs in workers to open and save files (no Qt).

They only call the engine (:mod:`unet_engine.io.volume_io`) and numpy, return plain results and
raise :class:`~unet_engine.errors.SegLoopError` subclasses, so they are testable headless
and the controller can show ``str(error)`` in a dialog.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desktop_app.state.scan_checks import modality_notes
from desktop_app.state.intensity import IntensityStats, intensity_stats
from unet_engine.errors import ImageDimensionError, SegLoopError
from unet_engine.io.checks import memory_errors_named
from unet_engine.io.label_descriptions import LabelDescription
from unet_engine.io.mask_labels import MaskLabels
from unet_engine.volume import Volume

log = logging.getLogger(__name__)

#: Save-as choices: dialog filter -> suffix appended when the name has none of them.
MASK_FORMATS: dict[str, str] = {
    "NIfTI (*.nii.gz)": ".nii.gz",
    "NRRD (*.nrrd)": ".nrrd",
    "Slicer segmentation (*.seg.nrrd)": ".seg.nrrd",
    "DICOM SEG (*.dcm)": ".dcm",  # only over a scan opened from a DICOM series (the engine refuses otherwise)
}
_MASK_HINTS = ("label", "mask", "seg")


@dataclass
class LoadedScan:
    """What the open-scan worker hands back to the GUI thread."""

    volume: Volume
    mask: np.ndarray
    mask_path: Path | None
    stats: IntensityStats
    seconds: float
    #: How the scan contradicts a CT / an MR project (:func:`desktop_app.state.scan_checks.modality_notes`)
    modality_notes: dict[str, str | None] = field(default_factory=dict)
    #: The label names and colours saved with the mask (none without a mask)
    mask_labels: MaskLabels = field(default_factory=MaskLabels)


@dataclass
class LoadedMask:
    """What the open-mask worker hands back: the voxels and the names saved with them."""

    mask: np.ndarray
    labels: MaskLabels = field(default_factory=MaskLabels)


def check_displayable(volume: Volume, path: str | Path) -> None:
    """Refuse arrays the viewer cannot show as one 3D scan (4D series, odd channels)."""
    if volume.channels == 1:
        return
    if volume.channels in (3, 4) and volume.array.dtype == np.uint8:
        return  # an RGB(A) photo
    raise ImageDimensionError(
        f"has {volume.channels} volumes or channels per voxel (a 4D image of shape "
        f"{tuple(volume.array.shape)}); SegLoop opens a single 3D scan. Extract one volume "
        "first (for example: fslroi in.nii.gz out.nii.gz 0 1).",
        path,
    )


def load_scan(path: str | Path, mask_path: str | Path | None = None) -> LoadedScan:
    """Read a scan (file or DICOM folder), optionally its mask and the label names saved with
    it, its intensity statistics and whether its values contradict a CT or an MR project
    (checked here, off the GUI thread)."""
    from unet_engine.io.volume_io import read_volume

    t0 = time.perf_counter()
    with memory_errors_named(path, "opening this scan"):  # a dialog naming the scan, not a traceback
        volume = read_volume(path)
        check_displayable(volume, path)
        if mask_path is not None:
            loaded = load_mask(mask_path, like=volume)
            mask, mask_labels = loaded.mask, loaded.labels
        else:
            mask, mask_labels = np.zeros(volume.shape, dtype=np.uint8), MaskLabels()
        stats = intensity_stats(volume.array)
        notes = modality_notes(volume)
    seconds = time.perf_counter() - t0
    log.info("opened %s %s in %.2f s", path, volume.shape, seconds)
    return LoadedScan(volume, mask, Path(mask_path) if mask_path is not None else None, stats, seconds, notes,
                      mask_labels)


def load_mask(path: str | Path, like: Volume) -> LoadedMask:
    """Read a label mask that must lie on ``like``'s grid, and the label names saved with it
    (a damaged label file only gives :attr:`MaskLabels.warning`, never an error)."""
    from unet_engine.io.volume_io import read_mask, read_mask_labels

    mask = read_mask(path, like=like)
    return LoadedMask(mask, read_mask_labels(path))


def save_mask(mask: np.ndarray, like: Volume, path: str | Path,
              labels: list[LabelDescription] | None = None) -> Path:
    """Write ``mask`` (a private copy) next to nothing the user did not choose, with the
    label names and colours ``labels`` (in the file, or beside it: :func:`unet_engine.io.volume_io.write_mask`)."""
    from unet_engine.io.volume_io import write_mask

    refuse_source_overwrite(path, like)
    return Path(write_mask(mask, like=like, path=Path(path), labels=labels))


def is_source_path(path: str | Path, volume: Volume | None) -> bool:
    """True when ``path`` is the scan's own file or lies inside its DICOM folder."""
    if volume is None or volume.source_path is None:
        return False
    target = Path(path).expanduser().resolve()
    source = Path(volume.source_path).expanduser().resolve()
    return target == source or (source.is_dir() and source in target.parents)


def refuse_source_overwrite(path: str | Path, volume: Volume | None) -> None:
    if is_source_path(path, volume):
        raise SegLoopError("is the scan you are viewing (or inside its DICOM folder); "
                           "save the mask under another name", path)


def with_mask_suffix(path: str | Path, chosen_filter: str = "") -> Path:
    """Append the chosen format's suffix unless ``path`` already ends with a known one."""
    p = Path(path)
    name = p.name.lower()
    if any(name.endswith(s) for s in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm")):
        return p
    return p.with_name(p.name + MASK_FORMATS.get(chosen_filter, ".nii.gz"))


def suggested_mask_path(volume: Volume | None, current: Path | None) -> Path:
    """Default Save-as name: the current mask, else ``<scan>_mask.nii.gz`` beside the scan."""
    if current is not None:
        return current
    if volume is None or volume.source_path is None:
        return Path.home() / "mask.nii.gz"
    src = Path(volume.source_path)
    if src.is_dir():
        return src.parent / f"{src.name}_mask.nii.gz"
    stem = src.name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".dcm"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return src.with_name(f"{stem}_mask.nii.gz")


def looks_like_mask(path: str | Path) -> bool:
    """Heuristic for drag-and-drop: a file named like a label map (label, mask, seg)."""
    p = Path(path)
    return p.is_file() and any(h in p.name.lower() for h in _MASK_HINTS)
