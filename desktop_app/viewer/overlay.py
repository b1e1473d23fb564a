"""Per-slice overlay rendering helpers (numpy only, no Qt).

* :func:`label_rgba` maps a label slice through an RGBA lookup table (``np.take``).
* :func:`label_outline` keeps only the boundary voxels of each label (4-neighbourhood).
* :func:`heat_lut` is the uncertainty heat-map table (transparent at 0).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def lut_size(values: Iterable[int], minimum: int = 256) -> int:
    """Rows a label LUT needs so every value in ``values`` indexes it and the last row
    (where :func:`label_rgba` clips unknown large values) stays transparent."""
    top = max((int(v) for v in values), default=0)
    return max(int(minimum), top + 2)


def label_rgba(labels: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGBA image ``(H, W, 4)`` of a 2D label slice through ``lut``.

    Negative values are drawn as background; values past the table clip to its last row,
    which :func:`lut_size` keeps transparent.
    """
    if labels.dtype.kind == "f":
        labels = labels.astype(np.int64)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        labels = np.where(labels < 0, 0, labels)
    return np.take(lut, labels, axis=0, mode="clip", out=out)


def label_outline(labels: np.ndarray) -> np.ndarray:
    """Copy of a 2D label slice where only boundary voxels keep their value.

    A voxel is on the boundary when one of its 4 neighbours holds a different value (the
    slice edge counts as background). Cost: a few vectorised comparisons per slice.
    """
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    if lab.size == 0:
        return lab.copy()
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[0, :] = edge[-1, :] = True
    edge[:, 0] = edge[:, -1] = True
    return np.where(edge, lab, 0).astype(lab.dtype, copy=False)


def heat_lut(size: int = 256, max_alpha: int = 220) -> np.ndarray:
    """Transparent-to-hot RGBA table for uncertainty (0 = fully transparent).

    Colour runs dark red -> orange -> yellow -> white ("hot"), alpha ramps up quickly so
    low uncertainty does not hide the scan.
    """
    t = np.linspace(0.0, 1.0, size)
    r = np.clip(t * 3.0, 0, 1)
    g = np.clip(t * 3.0 - 1.0, 0, 1)
    b = np.clip(t * 3.0 - 2.0, 0, 1)
    a = np.clip(t * 4.0, 0, 1) * max_alpha / 255.0
    lut = np.stack([r, g, b, a], axis=1) * 255.0
    lut[0] = 0
    return np.round(lut).astype(np.uint8)
