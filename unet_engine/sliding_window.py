"""Sliding-window tiling for 3D models: overlapping patches blended with a Gaussian weight."""

from __future__ import annotations

import math

import numpy as np


def window_starts(size: int, patch: int, overlap: float = 0.5) -> list[int]:
    """Start indices of patches of ``patch`` voxels covering ``size`` with ``overlap`` (0..<1)."""
    if patch >= size:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, n)})


def patch_grid(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float = 0.5) -> list[tuple[slice, ...]]:
    """All patch index tuples tiling ``shape`` (every voxel covered at least once)."""
    starts = [window_starts(s, p, overlap) for s, p in zip(shape, patch)]
    out: list[tuple[slice, ...]] = []
    for combo in np.ndindex(*[len(s) for s in starts]):
        out.append(tuple(slice(starts[a][c], starts[a][c] + patch[a]) for a, c in enumerate(combo)))
    return out


def gaussian_weight(patch: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian importance map (max 1, strictly positive) favouring patch centres."""
    w = np.ones((), np.float32)
    for p in patch:
        x = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-3)
        g = np.exp(-0.5 * (x / sigma) ** 2)
        w = np.multiply.outer(w, g / g.max()).astype(np.float32)
    return np.maximum(w, 1e-3)


def default_patch_size(shape: tuple[int, ...], multiple: int, max_edge: int = 128) -> tuple[int, ...]:
    """Patch size for a volume: its own size rounded up to ``multiple``, capped at ``max_edge``."""
    out = []
    cap = max(multiple, (max_edge // multiple) * multiple)
    for s in shape:
        rounded = int(math.ceil(s / multiple) * multiple)
        out.append(min(rounded, cap))
    return tuple(out)
