"""Window/level maths and intensity statistics (numpy only, no Qt).

Levels are ``(low, high)`` display limits; window/level is ``(high - low, (high + low) / 2)``.
Statistics are computed once per scan on a strided sample (at most ~2 M voxels), in the
load worker, so a 100 M-voxel CT never blocks the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: CT presets: name -> (window, level) in Hounsfield units. Keys 1-4 select them in order.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Brain": (80.0, 40.0),
    "Soft tissue": (400.0, 40.0),
    "Lung": (1500.0, -600.0),
    "Bone": (1800.0, 400.0),
}
AUTO = "Auto"
#: Percentiles used by the Auto preset (robust to MR intensity outliers).
AUTO_PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 2_000_000


def single_channel(array: np.ndarray) -> np.ndarray:
    """The scan as one value per voxel -- RGB(A) channels averaged -- as the editing tools
    compare intensities."""
    return array.mean(axis=-1) if array.ndim == 4 else array


def levels_from_window(window: float, level: float) -> tuple[float, float]:
    window = max(float(window), 1e-6)
    return level - window / 2.0, level + window / 2.0


def window_from_levels(low: float, high: float) -> tuple[float, float]:
    return float(high - low), float(high + low) / 2.0


@dataclass(frozen=True)
class IntensityStats:
    """Summary of a scan's intensities (from a sample)."""

    vmin: float
    vmax: float
    auto_low: float  # AUTO_PERCENTILES[0]
    auto_high: float  # AUTO_PERCENTILES[1]
    hist_counts: np.ndarray  # (bins,)
    hist_edges: np.ndarray  # (bins + 1,)

    @property
    def auto_levels(self) -> tuple[float, float]:
        lo, hi = self.auto_low, self.auto_high
        if hi <= lo:
            hi = lo + 1.0
        return lo, hi

    @property
    def drag_scale(self) -> float:
        """Intensity units per screen pixel of window/level dragging."""
        return max((self.auto_high - self.auto_low) / 300.0, 1e-3)


def sample_voxels(array: np.ndarray, max_samples: int = _MAX_SAMPLES) -> np.ndarray:
    """A strided sample of the finite voxel values (RGB images: mean over channels)."""
    a = array
    if a.ndim == 4:
        a = a.mean(axis=3) if a.size <= max_samples * 4 else a[..., 0]
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ravel(a)
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    return sample


def intensity_stats(array: np.ndarray, bins: int = 256) -> IntensityStats:
    """Min/max, Auto percentiles and a histogram of ``array`` from a strided sample."""
    sample = sample_voxels(array)
    if sample.size == 0:
        return IntensityStats(0.0, 1.0, 0.0, 1.0, np.zeros(bins), np.linspace(0, 1, bins + 1))
    sample = sample.astype(np.float32, copy=False)
    vmin, vmax = float(sample.min()), float(sample.max())
    lo, hi = (float(v) for v in np.percentile(sample, AUTO_PERCENTILES))
    if vmax <= vmin:
        vmax = vmin + 1.0
    counts, edges = np.histogram(sample, bins=bins, range=(vmin, vmax))
    return IntensityStats(vmin, vmax, lo, hi, counts.astype(np.float64), edges)


def looks_like_ct(stats: IntensityStats) -> bool:
    """Hounsfield-like intensities: air at about -1000 (NIfTI files carry no modality)."""
    return stats.vmin <= -900.0 and stats.auto_low <= -500.0 and stats.vmax >= 100.0


def default_levels(modality: str, stats: IntensityStats) -> tuple[str, tuple[float, float]]:
    """Preset name and levels to show first: CT -> soft tissue, otherwise Auto.

    A scan of unknown modality whose intensities look like Hounsfield units
    (:func:`looks_like_ct`) is treated as CT.
    """
    modality = str(modality).upper()
    if modality == "CT" or (modality in ("", "UNKNOWN") and looks_like_ct(stats)):
        return "Soft tissue", levels_from_window(*CT_PRESETS["Soft tissue"])
    return AUTO, stats.auto_levels


def preset_levels(name: str, stats: IntensityStats | None) -> tuple[float, float]:
    """Levels of a preset by name (``"Auto"`` needs ``stats``)."""
    if name == AUTO:
        if stats is None:
            raise ValueError("the Auto preset needs the scan's intensity statistics")
        return stats.auto_levels
    return levels_from_window(*CT_PRESETS[name])


def drag_levels(
    levels: tuple[float, float], dx: float, dy: float, scale: float
) -> tuple[float, float]:
    """New levels after a right-drag of ``(dx, dy)`` screen pixels.

    Right = wider window, left = narrower; up (negative ``dy``) = higher level (darker
    image), down = lower level. ``scale`` is intensity units per pixel.
    """
    window, level = window_from_levels(*levels)
    window = max(window + dx * scale, scale)
    level = level - dy * scale
    return levels_from_window(window, level)
