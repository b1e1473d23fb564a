"""The ONE preprocessing path shared by training and inference.

A model is only as good as the agreement between what it saw in training and what it
sees in use, so both the trainer and :mod:`unet_engine.inference.predict` call
:func:`prepare_image` (and :func:`prepare_label` / :func:`slice_stack`) with the
:class:`PreprocessConfig` stored in the model card.

Normalisation (:func:`normalize`), per case:

* ``mode="mr"``: clip to the (0.5, 99.5) percentiles of the foreground (nonzero) voxels,
  then z-score with the foreground mean and standard deviation. Never min/max scaling:
  maxima of the hippocampus MR cases range from 112 to 1.7e6.
* ``mode="ct"``: clip to the Hounsfield window ``ct_window`` (default -1000..1000), then
  map the window linearly to -1..1.
* ``mode="auto"``: CT when the modality says "CT" or the values look like Hounsfield
  units (see :func:`looks_like_hu`), else MR.

Robust to constant images (-> zeros), NaN/Inf (NaN and -Inf -> the lower clip value,
+Inf -> the upper one) and any integer or float dtype; always returns float32.

Resampling happens only when the config sets ``target_spacing`` (``None`` entries keep
that axis); inference resamples its output back to the input grid. Inference does both
directions on the device, slab by slab, with the same interpolation as
:func:`resample_to_shape` (``unet_engine.inference.resampling``: float32 arithmetic, within
~2e-7 of this float64 path); training resamples whole cases here.

Public helpers: :func:`prepare_image` / :func:`prepare_label` (a whole case, as the trainer
and inference use it), :func:`slice_stack` (2D/2.5D network input along
:func:`slice_axis_for_spacing`), :func:`pad_to_multiple`, :func:`intensity_stats` +
:func:`apply_intensity` (statistics of the whole image applied to some of its slices:
what :func:`normalize` does in one go), :func:`resample_to_spacing` / :func:`resample_back`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import numpy as np
from scipy import ndimage

from unet_engine.volume import Volume

log = logging.getLogger(__name__)

#: Statistics use at most this many voxels (a regular subsample) so huge scans stay fast.
STATS_MAX_VOXELS = 2_000_000
NORMALIZE_MODES = ("auto", "mr", "ct")


@dataclass
class PreprocessConfig:
    """How images are normalised and resampled; stored as a dict in the model card."""

    mode: str = "auto"  # "mr", "ct" or "auto"
    percentiles: tuple[float, float] = (0.5, 99.5)  # MR clip, over foreground voxels
    ct_window: tuple[float, float] = (-1000.0, 1000.0)  # CT clip in HU, mapped to -1..1
    target_spacing: tuple[float | None, float | None, float | None] | None = None  # (k, j, i) mm
    foreground: str = "nonzero"  # MR statistics over "nonzero" voxels or "all"

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZE_MODES:
            raise ValueError(f"preprocessing mode must be one of {NORMALIZE_MODES}, got {self.mode!r}")
        if self.foreground not in ("nonzero", "all"):
            raise ValueError(f"preprocessing foreground must be 'nonzero' or 'all', got {self.foreground!r}")
        self.percentiles = (float(self.percentiles[0]), float(self.percentiles[1]))
        if not 0.0 <= self.percentiles[0] < self.percentiles[1] <= 100.0:
            raise ValueError(f"preprocessing percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        self.ct_window = (float(self.ct_window[0]), float(self.ct_window[1]))
        if not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"preprocessing ct_window must be (low, high) with low < high, got {self.ct_window}")
        if self.target_spacing is not None:
            ts = tuple(None if s is None else float(s) for s in self.target_spacing)
            if len(ts) != 3 or any(s is not None and not s > 0 for s in ts):
                raise ValueError(f"target_spacing must be 3 positive values (k, j, i) or None, got {self.target_spacing}")
            self.target_spacing = ts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["ct_window"] = list(self.ct_window)
        d["target_spacing"] = None if self.target_spacing is None else list(self.target_spacing)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "PreprocessConfig":
        """Build from a card's ``preprocessing`` dict (unknown keys ignored, missing -> defaults)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for k in ("percentiles", "ct_window"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        if kwargs.get("target_spacing") is not None:
            kwargs["target_spacing"] = tuple(kwargs["target_spacing"])
        return cls(**kwargs)


def as_config(card_or_config: Any) -> PreprocessConfig:
    """Accept a :class:`PreprocessConfig`, its dict, ``None`` (defaults) or a model card."""
    if card_or_config is None:
        return PreprocessConfig()
    if isinstance(card_or_config, PreprocessConfig):
        return card_or_config
    if isinstance(card_or_config, dict):
        return PreprocessConfig.from_dict(card_or_config)
    pre = getattr(card_or_config, "preprocessing", None)  # a ModelCard
    if pre is not None:
        return as_config(pre)
    raise TypeError(f"expected a PreprocessConfig, dict or ModelCard, got {type(card_or_config).__name__}")


def subsample(values: np.ndarray) -> np.ndarray:
    """A deterministic regular subsample of at most ``STATS_MAX_VOXELS`` values."""
    if values.size <= STATS_MAX_VOXELS:
        return values
    step = int(np.ceil(values.size / STATS_MAX_VOXELS))
    return values[::step]


def looks_like_hu(array: np.ndarray) -> bool:
    """Heuristic: Hounsfield units have air near -1000 and no huge maxima.

    True when the 1st percentile is at or below -500 HU and the maximum is below 32768
    (CT is stored as int16/12-bit); MR intensities are non-negative.
    """
    flat = subsample(np.asarray(array).reshape(-1))
    flat = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if flat.size == 0:
        return False
    p1 = float(np.percentile(flat, 1.0))
    return p1 <= -500.0 and float(flat.max()) < 32768.0


def resolve_mode(array: np.ndarray, config: PreprocessConfig, modality: str | None = None) -> str:
    """The concrete normalisation ("mr" or "ct") for this image."""
    if config.mode != "auto":
        return config.mode
    if modality is not None and modality.upper() == "CT":
        return "ct"
    return "ct" if looks_like_hu(array) else "mr"


@dataclass(frozen=True)
class IntensityStats:
    """Per-case normalisation parameters: ``(clip(x, lo, hi) - centre) / scale`` (scale 0: zeros)."""

    mode: str  # "mr" or "ct"
    lo: float
    hi: float
    centre: float
    scale: float


def intensity_stats(array: np.ndarray, config: PreprocessConfig | dict | None = None,
                    modality: str | None = None) -> IntensityStats:
    """Measure the normalisation of a whole image (see the module docstring).

    Statistics come from at most ``STATS_MAX_VOXELS`` voxels (a regular subsample), so
    this is cheap even for a 512x512x600 CT; :func:`apply_intensity` then normalises the
    whole image or only the slices a job needs, consistently.
    """
    config = as_config(config)
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"cannot normalise an image of dtype {a.dtype}")
    sample = subsample(a.reshape(-1))
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        log.warning("image has no finite voxel; normalised to zeros")
        return IntensityStats("mr", 0.0, 0.0, 0.0, 0.0)
    sample = sample.astype(np.float64)
    mode = resolve_mode(sample, config, modality)
    if mode == "ct":
        lo, hi = config.ct_window
        return IntensityStats("ct", lo, hi, (lo + hi) / 2.0, (hi - lo) / 2.0)
    values = sample
    if config.foreground == "nonzero":
        nz = values[values != 0]
        if nz.size >= max(16, values.size // 100):  # fall back to all voxels when almost empty
            values = nz
    lo, hi = (float(v) for v in np.percentile(values, config.percentiles))
    clipped = np.clip(values, lo, hi)
    mean, std = float(clipped.mean()), float(clipped.std())
    scale = std if std > 1e-8 * max(1.0, abs(mean)) else 0.0  # constant image: zeros, never NaN
    return IntensityStats("mr", lo, hi, mean, scale)


def apply_intensity(array: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """Normalise (a part of) an image with :func:`intensity_stats` of the whole; float32 copy.

    NaN and -Inf become the lower clip value, +Inf the upper one.
    """
    a = np.array(array, dtype=np.float32, copy=True)
    if stats.scale == 0.0:
        a[...] = 0.0
        return a
    if not np.isfinite(a).all():
        np.nan_to_num(a, copy=False, nan=stats.lo, posinf=stats.hi, neginf=stats.lo)
    np.clip(a, stats.lo, stats.hi, out=a)
    a -= np.float32(stats.centre)
    a /= np.float32(stats.scale)
    return a


def normalize(array: np.ndarray, config: PreprocessConfig | dict | None = None, modality: str | None = None) -> np.ndarray:
    """Per-case intensity normalisation to float32 (see the module docstring)."""
    return apply_intensity(array, intensity_stats(array, config, modality))


# ----- resampling ----------------------------------------------------------------------------


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...],
                    target_spacing: tuple[float | None, ...]) -> tuple[int, ...]:
    """Grid size after resampling ``shape`` at ``spacing`` to ``target_spacing`` (None = keep axis)."""
    out = []
    for n, s, t in zip(shape, spacing, target_spacing):
        out.append(int(n) if t is None else max(1, int(round(n * s / t))))
    return tuple(out)


def resample_to_shape(array: np.ndarray, shape: tuple[int, ...], order: int = 1) -> np.ndarray:
    """Resample the last ``len(shape)`` axes of ``array`` to ``shape`` (voxel edges aligned).

    ``order=0`` (nearest) for labels, 1 (linear) for images and probabilities. Leading
    axes (e.g. classes) are resampled independently.
    """
    array = np.asarray(array)
    lead = array.ndim - len(shape)
    if tuple(array.shape[lead:]) == tuple(shape):
        return array
    factors = [1.0] * lead + [n / o for n, o in zip(shape, array.shape[lead:])]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True, prefilter=False)
    if tuple(out.shape[lead:]) != tuple(shape):  # guard against rounding in zoom's shape
        fix = tuple(slice(0, n) for n in shape)
        out = out[(Ellipsis,) + fix]
    return out


def resample_to_spacing(
    array: np.ndarray, spacing: tuple[float, ...], target_spacing: tuple[float | None, ...] | None, order: int = 1
) -> np.ndarray:
    """Resample a ``[k, j, i]`` array from ``spacing`` to ``target_spacing`` (no-op when None)."""
    if target_spacing is None:
        return array
    shape = resampled_shape(array.shape[-3:], spacing, target_spacing)
    return resample_to_shape(array, shape, order=order)


def resample_back(array: np.ndarray, original_shape: tuple[int, ...], order: int = 1) -> np.ndarray:
    """Undo :func:`resample_to_spacing`: bring the last axes back to ``original_shape``."""
    return resample_to_shape(array, tuple(original_shape), order=order)


# ----- padding and slicing -------------------------------------------------------------------


def pad_to_multiple(
    array: np.ndarray, multiple: int, axes: tuple[int, ...] | None = None, mode: str = "edge"
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad ``axes`` (default: all) up to a multiple of ``multiple``, split evenly before/after.

    Returns the padded array and the index tuple that crops it back to the original.
    """
    array = np.asarray(array)
    axes = tuple(range(array.ndim)) if axes is None else tuple(a % array.ndim for a in axes)
    pad = [(0, 0)] * array.ndim
    crop = [slice(None)] * array.ndim
    for ax in axes:
        n = array.shape[ax]
        extra = (-n) % multiple
        pad[ax] = (extra // 2, extra - extra // 2)
        crop[ax] = slice(extra // 2, extra // 2 + n)
    if not any(p != (0, 0) for p in pad):
        return array, tuple(crop)
    return np.pad(array, pad, mode=cast(Any, mode)), tuple(crop)  # a numpy mode name, checked by numpy


def slice_axis_for_spacing(spacing: tuple[float, float, float], tol: float = 1e-3) -> int:
    """The axis 2D models slice along: the one with the largest spacing (``k`` when isotropic)."""
    values = tuple(float(s) for s in spacing)
    biggest = max(values)
    for ax, s in enumerate(values):
        if s >= biggest * (1 - tol):
            return ax
    return 0


def context_indices(index: int | np.ndarray, n: int, context_slices: int) -> np.ndarray:
    """Neighbour indices ``index-c .. index+c`` for each index, clamped to ``0..n-1``.

    Shape ``(len(index), 2c+1)`` (or ``(2c+1,)`` for a scalar): edge slices repeat.
    """
    idx = np.asarray(index)
    offsets = np.arange(-context_slices, context_slices + 1)
    return np.clip(idx[..., None] + offsets, 0, n - 1)


def slice_stack(
    array: np.ndarray, axis: int = 0, context_slices: int = 0, indices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """2D/2.5D network input ``[N, 2c+1, H, W]`` (float32) from a ``[k, j, i]`` array.

    ``axis`` is the slicing axis (see :func:`slice_axis_for_spacing`); ``indices`` picks
    slices (default all). Channel ``c`` is the slice itself; neighbours beyond the volume
    edge repeat the edge slice. Labels: use ``context_slices=0`` and take channel 0.
    """
    moved = np.moveaxis(np.asarray(array), axis, 0)
    n = moved.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if context_slices == 0:
        out = moved[idx][:, None]
    else:
        out = moved[context_indices(idx, n, context_slices)]
    return np.ascontiguousarray(out, dtype=np.float32 if out.dtype.kind == "f" else out.dtype)


# ----- the shared entry points ------------------------------------------------------------------


def image_array(volume_or_array: Volume | np.ndarray) -> tuple[np.ndarray, tuple[float, float, float] | None, str | None]:
    """``(array [k, j, i], spacing or None, modality or None)`` of a Volume or array.

    Multi-channel (RGB) volumes are averaged to grey; a 2D array becomes one slice.
    """
    if isinstance(volume_or_array, Volume):
        arr = volume_or_array.array
        if arr.ndim == 4:  # RGB / multi-channel: grey by channel mean
            log.info("multi-channel image: using the mean of its %d channels", arr.shape[3])
            arr = arr.astype(np.float32).mean(axis=3)
        return arr, volume_or_array.spacing, volume_or_array.modality
    arr = np.asarray(volume_or_array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a [k, j, i] array, got shape {arr.shape}")
    return arr, None, None


def prepare_image(
    volume_or_array: Volume | np.ndarray,
    card_or_config: Any = None,
    *,
    spacing: tuple[float, float, float] | None = None,
    modality: str | None = None,
    resample: bool = True,
) -> np.ndarray:
    """Normalised (and, when the config asks, resampled) float32 ``[k, j, i]`` image.

    ``volume_or_array`` is a :class:`Volume` (spacing and modality taken from it) or an
    array (pass ``spacing`` if the config resamples; a 2D array becomes one slice).
    ``card_or_config`` is a model card, a :class:`PreprocessConfig` or its dict.
    Normalisation statistics come from the whole image before any resampling.
    """
    config = as_config(card_or_config)
    arr, vol_spacing, vol_modality = image_array(volume_or_array)
    spacing = spacing or vol_spacing
    out = normalize(arr, config, modality or vol_modality)
    if resample and config.target_spacing is not None:
        if spacing is None:
            raise ValueError("the preprocessing resamples to target_spacing: pass the image spacing")
        out = resample_to_spacing(out, spacing, config.target_spacing, order=1).astype(np.float32, copy=False)
    return out


def prepare_label(
    label: Volume | np.ndarray, card_or_config: Any = None, *, spacing: tuple[float, float, float] | None = None
) -> np.ndarray:
    """Label map on the same grid as :func:`prepare_image` (nearest-neighbour), as uint8/int."""
    config = as_config(card_or_config)
    if isinstance(label, Volume):
        spacing = spacing or label.spacing
        label = label.array
    arr = np.asarray(label)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.dtype.kind == "f":
        arr = np.rint(np.nan_to_num(arr)).astype(np.int64)
    if arr.size and arr.min() >= 0 and arr.max() < 256:
        arr = arr.astype(np.uint8, copy=False)
    if config.target_spacing is not None:
        if spacing is None:
            raise ValueError("the preprocessing resamples to target_spacing: pass the label spacing")
        arr = resample_to_spacing(arr, spacing, config.target_spacing, order=0)
    return arr
