"""The planner's rules, nnU-Net style: each returns its decision and the reason a user reads.

:func:`unet_engine.planning.plan.make_plan` calls them in order: dimensionality, target
spacing, layout (patch, depth, batch), normalisation, augmentation, schedule. Constants
that decide numbers are named here, with where they come from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_engine.errors import SegLoopError
from unet_engine.planning import cost
from unet_engine.planning.fingerprint import DatasetFingerprint
from unet_engine.model.preprocessing import PreprocessConfig

ANISOTROPY_2D = 3.0  # nnU-Net's threshold: spacing ratio above which the thick axis is treated apart
MIN_BOTTLENECK_EDGE = 4  # nnU-Net pools an axis while it stays >= 4 voxels
MAX_DEPTH = {2: 6, 3: 5}
MAX_EDGE = {2: 512, 3: 128}  # patch edge cap in voxels (after resampling)
MIN_BATCH = 2  # nnU-Net's minimum; BatchNorm needs more than one sample
MAX_BATCH = {2: 32, 3: 8}
CPU_3D_MIN_COVERAGE = 0.25  # on a CPU a 3D patch must cover >= 1/4 of the median volume (nnU-Net's cascade rule)
BASE_WIDTH = {"cpu": 16, "gpu": 32}  # nnU-Net uses 32; on a CPU 16 costs a quarter of the time
OBJECT_CONTEXT = 1.5  # CPU patch: the labelled structure's extent (90th percentile) x this, at most the median shape
CONTEXT_MIN_SLICES = 5  # 2.5D (one neighbour slice each side) when volumes have at least this many slices
MIN_STEPS = 20  # fewer is refused: no network learns anything in 20 steps


def _mm(values: Sequence[float | None]) -> str:
    return " x ".join("native" if v is None else f"{v:.3g}" for v in values) + " mm"


def _vox(values: tuple[int, ...] | list[int]) -> str:
    return " x ".join(str(int(v)) for v in values)


def slice_axis(fp: DatasetFingerprint) -> int:
    """The axis 2D models slice along: the largest median spacing (k when isotropic)."""
    s = fp.median_spacing
    return int(np.argmax(np.array(s) >= max(s) * (1 - 1e-3)))


def anisotropy(fp: DatasetFingerprint) -> float:
    s = fp.median_spacing
    return float(max(s) / min(s))


def choose_target_spacing(fp: DatasetFingerprint, dims: int) -> tuple[list[float | None], str]:
    """nnU-Net: the median spacing; 3D on anisotropic data takes the 10th percentile along the
    thick axis (finer, so it is not made coarser still); 2D keeps the slice axis native."""
    med = list(fp.median_spacing)
    if dims == 2:
        ax = slice_axis(fp)
        target: list[float | None] = [None if a == ax else med[a] for a in range(3)]
        return target, (f"median in-plane spacing {_mm([med[a] for a in range(3) if a != ax])}; slices stay "
                        f"native along axis {'kji'[ax]} (2D)")
    ax = int(np.argmax(med))
    others = [med[a] for a in range(3) if a != ax]
    if med[ax] > ANISOTROPY_2D * min(others):
        p10 = fp.spacing_percentile(10)[ax]
        med[ax] = max(p10, max(others))
        return list(med), (f"median spacing, except the thick axis {'kji'[ax]}: its 10th percentile {p10:.3g} mm "
                           "(nnU-Net's rule for anisotropic 3D data)")
    return list(med), f"median spacing of the {len(fp.cases)} case(s) {_mm(med)}"


def depth_for(edges: list[int], dims: int) -> int:
    """Poolings until the smallest edge would drop below ``MIN_BOTTLENECK_EDGE`` voxels."""
    d = 0
    while d < MAX_DEPTH[dims] and min(edges) / 2 ** (d + 1) >= MIN_BOTTLENECK_EDGE:
        d += 1
    return max(1, d)


def start_patch(full: list[int], obj: list[int] | None, dims: int, budget: cost.DeviceBudget) -> tuple[list[int], bool]:
    """The patch before fitting: the median shape (nnU-Net); on a CPU at most the labelled
    structure's extent x ``OBJECT_CONTEXT`` (every voxel costs there, and patches mostly of
    background learned less per step on ACDC: bench/RESULTS.md). True when the structure decided."""
    patch = [min(int(n), MAX_EDGE[dims]) for n in full]
    if budget.is_gpu or obj is None:
        return patch, False
    fitted = [min(p, max(MIN_BOTTLENECK_EDGE * 2, int(math.ceil(OBJECT_CONTEXT * o)))) for p, o in zip(patch, obj)]
    return fitted, fitted != patch


def fit_layout(dims: int, full: list[int], budget: cost.DeviceBudget, in_channels: int, num_classes: int,
               base_width: int, ov: dict[str, Any], obj: list[int] | None = None) -> dict[str, Any]:
    """Patch, depth and batch for a median sample of ``full`` voxels on ``budget`` (nnU-Net's
    fitting: start from the median shape (on a CPU: see :func:`start_patch`), shrink the axis
    largest relative to it until a batch of ``MIN_BATCH`` fits memory and the step-time
    target, then grow the batch)."""
    user_patch = ov.get("patch_size")
    user_depth, user_batch = ov.get("depth"), ov.get("batch_size")
    if user_patch:
        patch, by_object = [int(p) for p in user_patch], False
    else:
        patch, by_object = start_patch(full, obj, dims, budget)
    shrunk = False
    while True:
        depth = int(user_depth) if user_depth is not None else depth_for(patch, dims)
        m = 2**depth
        p = [max(m, int(math.ceil(n / m) * m)) for n in patch]
        if user_patch and p != patch:
            raise SegLoopError(f"plan: patch_size {patch} must be multiples of {m} (2**depth, depth {depth}), "
                               f"e.g. {p}")

        def mem(b: int) -> int:
            return cost.train_memory_bytes(dims, in_channels, num_classes, base_width, depth, p, b)

        def sec(b: int) -> float:
            return cost.step_seconds(budget, dims, in_channels, num_classes, base_width, depth, p, b)

        fits = mem(MIN_BATCH) <= budget.memory_bytes and sec(MIN_BATCH) <= budget.step_max_s
        can_shrink = not user_patch and max(n / m for n in patch) > MIN_BOTTLENECK_EDGE
        if fits or not can_shrink:
            break
        ax = int(np.argmax([pp / f for pp, f in zip(p, full)]))
        patch = list(p)
        patch[ax] = max(m * MIN_BOTTLENECK_EDGE, p[ax] - m)
        shrunk = True
    if user_batch is not None:
        batch = int(user_batch)
    else:
        batch = MIN_BATCH
        while batch < MAX_BATCH[dims] and mem(batch + 1) <= budget.memory_bytes and sec(batch + 1) <= budget.step_target_s:
            batch += 1
    return {"patch": p, "depth": depth, "batch": batch, "memory": mem(batch), "seconds": sec(batch), "shrunk": shrunk,
            "multiple": m, "by_object": by_object}


def choose_normalization(fp: DatasetFingerprint, ov: Any = None) -> tuple[dict[str, Any], str]:
    """CT: clip to the foreground 0.5/99.5 percentiles, scale to -1..1; MR: per-case z-score over
    nonzero voxels; US / other: per-case z-score over all voxels (both clipped to 0.5-99.5 %)."""
    choice = ov if ov is not None else fp.modality
    if isinstance(choice, dict):
        try:
            pre = PreprocessConfig.from_dict(choice)
        except (TypeError, ValueError) as exc:
            raise SegLoopError(f"plan: normalization {choice!r} is not valid ({exc})") from None
        return {k: v for k, v in pre.to_dict().items() if k != "target_spacing"}, "set by you"
    key = str(choice).strip().lower()
    if key == "ct":
        if fp.intensity is None:
            pre = PreprocessConfig(mode="ct")
            why = f"CT: no labelled voxels to measure, so the standard window {pre.ct_window[0]:.0f}..{pre.ct_window[1]:.0f} HU"
        else:
            lo, hi = fp.intensity["p00_5"], fp.intensity["p99_5"]
            if not hi > lo:
                raise SegLoopError(f"plan: the labelled CT voxels all have the value {lo:g}; cannot set a window")
            pre = PreprocessConfig(mode="ct", ct_window=(lo, hi))
            why = (f"CT: clip to the labelled voxels' 0.5-99.5 percentiles {lo:.0f}..{hi:.0f} HU "
                   f"({int(fp.intensity['samples'])} samples), scaled to -1..1")
    elif key in ("mr", "mri"):
        pre = PreprocessConfig(mode="mr", foreground="nonzero")
        why = "MR: per-case z-score over the nonzero voxels (clipped to their 0.5-99.5 percentiles)"
    elif key in ("us", "other", "z-score", "zscore"):
        pre = PreprocessConfig(mode="mr", foreground="all")
        why = f"{fp.modality if key in ('us', 'other') else 'z-score'}: per-case z-score over all voxels (clipped to 0.5-99.5 %)"
    else:
        raise SegLoopError(f"plan: unknown normalization {choice!r}; use CT, MR, z-score or a preprocessing dict")
    return {k: v for k, v in pre.to_dict().items() if k != "target_spacing"}, why


_SIDE = re.compile(r"\b(left|right|links|rechts|gauche|droite|sinistr\w*|dextr\w*)\b", re.I)


def choose_augment(fp: DatasetFingerprint, dims: int, ax2d: int | None) -> tuple[dict[str, Any], str]:
    """Rotation, scaling and intensity jitter always; mirroring only across the patient's
    left-right axis (anatomy is near-symmetric about the mid-sagittal plane, not front-back or
    head-feet), and not even that when a label name says left or right (it would swap sides)."""
    aug: dict[str, Any] = {}
    lr = fp.lr_axis
    sided = [n for n in fp.labels.values() if _SIDE.search(n)]
    if sided:
        aug["flip_axes"] = []
        why = f"no mirroring: label(s) {', '.join(repr(s) for s in sided)} name a side"
    elif lr is None:
        aug["flip_axes"] = []
        why = "no mirroring: the left-right axis is unknown (oblique or missing orientation)"
    elif dims == 2 and lr == ax2d:
        aug["flip_axes"] = []
        why = "no mirroring: left-right is the slicing axis"
    else:
        sample_axis = lr if dims == 3 else [a for a in range(3) if a != ax2d].index(lr)
        aug["flip_axes"] = [sample_axis]
        why = f"mirroring across the left-right axis ({'kji'[lr]}) only"
    return aug, why + "; rotation +-15 deg, scaling 0.85-1.15, intensity and gamma jitter"


# ----- validation of plans and of the user's changes ----------------------------------------------


def check_fields(dims: Any, context: Any, width: Any, depth: Any, patch: Any, batch: Any, spacing: Any, lr: Any,
                 steps: Any) -> None:
    def bad(name: str, value: Any, why: str) -> SegLoopError:
        return SegLoopError(f"plan: {name} {why} (got {value!r})")

    if dims not in (2, 3):
        raise bad("dims", dims, "must be 2 or 3")
    if not isinstance(context, int) or not 0 <= context <= 3 or (context and dims != 2):
        raise bad("context_slices", context, "must be 0..3, and 0 for a 3D model")
    if not isinstance(width, int) or not 4 <= width <= 64:
        raise bad("base_width", width, "must be 4..64")
    if not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH[dims]:
        raise bad("depth", depth, f"must be 1..{MAX_DEPTH[dims]} for a {dims}D model")
    if not isinstance(patch, (list, tuple)) or len(patch) != dims or not all(isinstance(p, int) and p >= 1 for p in patch):
        raise bad("patch_size", patch, f"must be {dims} positive integers for a {dims}D model")
    m = 2**depth
    if any(p % m or p < m for p in patch):
        raise bad("patch_size", patch, f"must be multiples of {m} (2**depth) for depth {depth}")
    if not isinstance(batch, int) or batch < 1:
        raise bad("batch_size", batch, "must be >= 1")
    if spacing is not None and (len(spacing) != 3 or any(s is not None and not float(s) > 0 for s in spacing)):
        raise bad("target_spacing", spacing, "must be 3 positive spacings in mm (k, j, i; None keeps an axis)")
    if not 0 < float(lr) < 1:
        raise bad("lr", lr, "must be in (0, 1)")
    if not isinstance(steps, int) or steps < MIN_STEPS:
        raise bad("max_steps", steps, f"must be >= {MIN_STEPS}")


def check_overrides(ov: dict[str, Any]) -> None:
    """Refuse values that no plan can hold, before planning around them."""
    limits = {"dims": (2, 3), "context_slices": (0, 3), "base_width": (4, 64), "depth": (1, max(MAX_DEPTH.values())),
              "batch_size": (1, 4096), "max_steps": (MIN_STEPS, 10**8)}
    for name, (lo, hi) in limits.items():
        if name in ov and not lo <= ov[name] <= hi:
            raise SegLoopError(f"plan: {name} must be {lo}..{hi} (got {ov[name]!r})")
    if "depth" in ov and "dims" in ov and ov["depth"] > MAX_DEPTH[ov["dims"]]:
        raise SegLoopError(f"plan: depth must be 1..{MAX_DEPTH[ov['dims']]} for a {ov['dims']}D model "
                           f"(got {ov['depth']})")
    if "lr" in ov and not (isinstance(ov["lr"], (int, float)) and 0 < float(ov["lr"]) < 1):
        raise SegLoopError(f"plan: lr must be in (0, 1) (got {ov['lr']!r})")


def as_int(ov: dict[str, Any], name: str) -> Any:
    v = ov.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise SegLoopError(f"plan: {name} must be an integer (got {v!r})")
    return int(v)
