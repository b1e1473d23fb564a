"""Interpolate a label between the slices where it is drawn (shape-based, no Qt).

For a label and a view axis: find the slices where the label is drawn; between each pair
of consecutive drawn slices ``a < b`` with a gap, every slice ``s`` gets
``phi(s) = (1 - t) * phi_a + t * phi_b > 0`` with ``t = (s - a) / (b - a)``, where
``phi`` is the signed distance (mm, positive inside) of a key slice computed with
``scipy.ndimage.distance_transform_edt`` and the in-plane spacing. The whole operation is
one undo entry. By default only empty voxels are written (other labels are kept).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from desktop_app.state.brush import apply_selection
from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_union, plane_axes
from desktop_app.state.history import History


def drawn_slices(mask: np.ndarray, value: int, axis: int) -> np.ndarray:
    """Indices of the slices (along ``axis``) holding at least one voxel of ``value``."""
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero((mask == value).any(axis=other))


def signed_distance(inside: np.ndarray, sampling: tuple[float, float]) -> np.ndarray:
    """Signed distance in mm of a 2D binary shape: > 0 inside, < 0 outside.

    ``inside`` must have background somewhere (callers pad the crop by one voxel)."""
    return ndimage.distance_transform_edt(inside, sampling=sampling) - ndimage.distance_transform_edt(
        ~inside, sampling=sampling
    )


def interpolate_slices(
    document: Document,
    history: History,
    value: int,
    axis: int,
    *,
    paint_over: str = "empty",
    description: str | None = None,
) -> BBox | None:
    """Fill the slices between drawn slices of label ``value`` along view ``axis``.

    Returns the changed bbox (announced once via ``notify_mask_changed``), or None when
    the label is drawn on fewer than two slices or there is no gap to fill."""
    mask = document.mask
    if mask is None or document.image is None:
        raise RuntimeError("no scan is open")
    if paint_over not in ("empty", "all"):
        raise ValueError(f"paint_over must be 'empty' or 'all', got {paint_over!r}")
    ra, ca = plane_axes(axis)
    present = mask == value
    keys = np.flatnonzero(present.any(axis=(ra, ca)))
    if keys.size < 2 or not np.any(np.diff(keys) > 1):
        return None
    # in-plane crop around the label on every slice (plus a 1-voxel pad added below)
    rows = np.flatnonzero(present.any(axis=(axis, ca)))
    cols = np.flatnonzero(present.any(axis=(axis, ra)))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    spacing = document.image.spacing
    sampling = (spacing[ra], spacing[ca])

    def plane(arr: np.ndarray, s: int) -> np.ndarray:
        idx: list[slice | int] = [slice(None)] * 3
        idx[axis], idx[ra], idx[ca] = s, slice(r0, r1), slice(c0, c1)
        return arr[tuple(idx)]

    def phi(s: int) -> np.ndarray:
        return signed_distance(np.pad(plane(present, s), 1), sampling)[1:-1, 1:-1]

    total: BBox | None = None
    with history.transaction(description or f"Interpolate label {value}") as txn:
        phi_b = phi(int(keys[0]))
        for a, b in zip(keys[:-1].tolist(), keys[1:].tolist()):
            phi_a, phi_b = phi_b, phi(b)
            if b - a <= 1:
                continue
            for s in range(a + 1, b):
                t = (s - a) / (b - a)
                sel = (1.0 - t) * phi_a + t * phi_b > 0
                if paint_over == "empty":
                    sel &= plane(mask, s) == 0
                bbox_l = [(0, 0)] * 3
                bbox_l[axis], bbox_l[ra], bbox_l[ca] = (s, s + 1), (r0, r1), (c0, c1)
                box: BBox = tuple(bbox_l)  # type: ignore[assignment]
                changed = apply_selection(document, txn, box, np.expand_dims(sel, axis), value, notify=False)
                total = bbox_union(total, changed)
    if total is not None:
        document.notify_mask_changed(total)
    return total
