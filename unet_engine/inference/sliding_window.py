"""Sliding-window tiling for 3D models: overlapping windows blended with a Gaussian weight.

The windows form a regular grid (:func:`axis_starts`: evenly spread starts per axis) and the
importance weight is separable (:func:`gaussian_1d` per axis, sigma 1/8 of the window, as
nnU-Net and MONAI's ``mode="gaussian"``), so the sum of the weights over all windows is the
outer product of three 1D sums: :class:`Blender` accumulates weighted window outputs into
one preallocated tensor on the device and divides by that product at the end, with no
weight-sum volume and no host round trip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_OVERLAP = 0.25  # MONAI's default; measured equal-or-better Dice than 0.5 (bench/RESULTS.md)
SIGMA_SCALE = 0.125  # Gaussian sigma as a fraction of the window edge
WEIGHT_FLOOR = 1e-3  # per-axis floor: every voxel of a window keeps a positive weight


def window_starts(size: int, patch: int, overlap: float = DEFAULT_OVERLAP) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``size`` with ``overlap`` (0..<1)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if patch >= size:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, n)})


def axis_starts(shape: Sequence[int], patch: Sequence[int], overlap: float = DEFAULT_OVERLAP) -> list[list[int]]:
    """:func:`window_starts` for every axis."""
    return [window_starts(int(s), int(p), overlap) for s, p in zip(shape, patch)]


def grid_windows(starts: Sequence[Sequence[int]], patch: Sequence[int]) -> list[tuple[slice, ...]]:
    """The Cartesian grid of windows (index tuples), first axis slowest."""
    return [tuple(slice(s, s + p) for s, p in zip(combo, patch)) for combo in itertools.product(*starts)]


def patch_grid(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float = DEFAULT_OVERLAP) -> list[tuple[slice, ...]]:
    """All window index tuples tiling ``shape`` (every voxel covered at least once)."""
    return grid_windows(axis_starts(shape, patch, overlap), patch)


def gaussian_1d(p: int, sigma_scale: float = SIGMA_SCALE, floor: float = WEIGHT_FLOOR) -> np.ndarray:
    """1D Gaussian importance profile of a window edge of ``p`` voxels (max 1, at least ``floor``)."""
    x = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
    sigma = max(p * sigma_scale, 1e-3)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return np.maximum(g / g.max(), floor).astype(np.float32)


def gaussian_weight(patch: tuple[int, ...], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Separable Gaussian importance map (outer product of :func:`gaussian_1d`), strictly positive."""
    w = np.ones((), np.float32)
    for p in patch:
        w = np.multiply.outer(w, gaussian_1d(p, sigma_scale)).astype(np.float32)
    return w


def weight_sums(size: int, patch: int, starts: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Sum along one axis of the 1D weights of all windows (> 0 wherever a window covers)."""
    g = gaussian_1d(patch, sigma_scale).astype(np.float64)
    out = np.zeros(size, np.float64)
    for s in starts:
        out[s : s + patch] += g[: max(0, min(patch, size - s))]
    return out.astype(np.float32)


def default_patch_size(shape: tuple[int, ...], multiple: int, max_edge: int = 128) -> tuple[int, ...]:
    """Patch size for a volume: its own size rounded up to ``multiple``, capped at ``max_edge``."""
    out = []
    cap = max(multiple, (max_edge // multiple) * multiple)
    for s in shape:
        rounded = int(math.ceil(s / multiple) * multiple)
        out.append(min(rounded, cap))
    return tuple(out)


def _round_up(v: float, m: int) -> int:
    return int(math.ceil(v / m) * m)


def grow_window(
    shape: Sequence[int], patch: Sequence[int], multiple: int, max_voxels: int, overlap: float = DEFAULT_OVERLAP
) -> tuple[int, ...]:
    """An inference window of at most ``max_voxels`` (at least ``patch``) that tiles ``shape`` evenly.

    A fully convolutional network runs faster per voxel on bigger windows (on the CPU,
    ~1.5x from 40x56x40 to 64x96x96) and bigger windows recompute fewer overlaps. The
    window grows one ``multiple`` at a time along the axis it covers least, never past the
    volume (rounded up); then each edge shrinks to the smallest multiple that needs the
    same number of windows, so windows are spread evenly instead of the last one hanging
    over the end.
    """
    full = [_round_up(s, multiple) for s in shape]
    win = [min(int(p), f) for p, f in zip(patch, full)]
    while True:
        grow = [a for a in range(len(win)) if win[a] + multiple <= full[a]]
        if not grow:
            break
        a = min(grow, key=lambda ax: win[ax] / full[ax])
        trial = list(win)
        trial[a] += multiple
        if int(np.prod(trial)) > max_voxels:
            break
        win = trial
    out = []
    for s, w, p in zip(shape, win, patch):
        n = len(window_starts(int(s), w, overlap))
        if n > 1:
            even = max(min(int(p), w), min(w, _round_up(s / (1.0 + (n - 1) * (1.0 - overlap)), multiple)))
            if len(window_starts(int(s), even, overlap)) <= n:
                w = even
        out.append(int(w))
    return tuple(out)


class Blender:
    """Gaussian-weighted sum of window outputs in a preallocated ``[C, *shape]`` tensor.

    ``starts`` is the window grid (:func:`axis_starts`); :meth:`add` takes a batch of
    window outputs ``[B, C, *patch]`` (scaled in place by the weight) and their index
    tuples; :meth:`result` divides by the separable weight sum, in place, slab by slab.
    """

    def __init__(
        self,
        channels: int,
        shape: tuple[int, ...],
        patch: tuple[int, ...],
        starts: Sequence[Sequence[int]],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        sigma_scale: float = SIGMA_SCALE,
        zeroed: bool = True,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        # zeroed=False: the caller writes every voxel with :meth:`put` ``first=True`` before adding to it
        self.acc = (torch.zeros if zeroed else torch.empty)((channels, *self.shape), dtype=dtype, device=device)
        self.single = all(len(s) == 1 for s in starts)  # one window: no weighting at all (exact)
        weight = None if self.single else torch.from_numpy(gaussian_weight(patch, sigma_scale))
        self.weight = None if weight is None else weight.to(device=device, dtype=dtype)
        self.sums = [
            torch.from_numpy(weight_sums(s, p, st, sigma_scale)).to(device=device, dtype=torch.float32)
            for s, p, st in zip(self.shape, patch, starts)
        ]

    def weigh(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` ``[B, C, *patch]`` times the window weight (in place; as is for one window)."""
        if self.weight is not None:
            values = values.to(self.acc.dtype).mul_(self.weight)
        return values

    def add(self, values: torch.Tensor, windows: Sequence[tuple[slice, ...]]) -> None:
        """Add ``values`` ``[B, C, *patch]`` (weighted in place) at ``windows``."""
        values = self.weigh(values)
        for b, w in enumerate(windows):
            self.acc[(slice(None), *w)] += values[b]

    def put(self, value: torch.Tensor, box: tuple[slice, ...], first: bool = False) -> None:
        """Add an already weighted ``[C, *box]`` part of one window at ``box``; ``first``: the
        first part there, copied in (the same value as adding it to zeros: weights and
        probabilities are >= 0, so no -0.0 can differ)."""
        if first:
            self.acc[(slice(None), *box)].copy_(value)
        else:
            self.acc[(slice(None), *box)] += value

    def normalised(self, box: tuple[slice, ...]) -> torch.Tensor:
        """The blended values of a finished ``box`` (a new tensor, bit-identical to :meth:`result` there)."""
        part = self.acc[(slice(None), *box)]
        if self.single:
            return part.clone()
        if len(self.sums) != 3:
            norm = self.sums[0][box[0]]
            for s, b in zip(self.sums[1:], box[1:]):
                norm = norm[..., None] * s[b]
            return part / norm
        sk, sj, si = (s[b] for s, b in zip(self.sums, box))
        return part / (sk[:, None, None] * (sj[:, None] * si[None, :]))

    def result(self, chunk: int = 16) -> torch.Tensor:
        """The blended ``[C, *shape]`` tensor (the accumulator itself, normalised in place)."""
        if self.single:
            return self.acc
        if len(self.sums) != 3:  # generic n-D: one broadcast product
            norm = self.sums[0]
            for s in self.sums[1:]:
                norm = norm[..., None] * s
            return self.acc.div_(norm)
        sk, sj, si = self.sums
        plane = sj[:, None] * si[None, :]
        for k0 in range(0, self.shape[0], chunk):
            k1 = min(self.shape[0], k0 + chunk)
            self.acc[:, k0:k1].div_(sk[k0:k1, None, None] * plane)
        return self.acc
