"""Interpolate a label between the slices where it is drawn (shape-based, no Qt).

For a label and a view axis: find the slices where the label is drawn; between each pair
of consecutive drawn slices ``a < b`` with a gap, every slice ``s`` gets
``phi(s) = (1 - t) * phi_a + t * phi_b > 0`` with ``t = (s - a) / (b - a)``, where
``phi`` is the signed distance (mm, positive inside) of a key slice computed with
``scipy.ndimage.distance_transform_edt`` and the in-plane spacing. The whole operation is
one undo entry. By default only empty voxels are written (other labels are kept).

:func:`interpolation_patch` is the pure compute step (a mask snapshot in, a
:class:`~desktop_app.state.label_ops.MaskPatch` out: safe in a worker thread);
:func:`interpolate_job` snapshots the document for it; :func:`interpolate_slices` is
compute + :func:`~desktop_app.state.label_ops.apply_patch` on the GUI thread.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy import ndimage

from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, plane_axes
from desktop_app.state.history import History
from desktop_app.state.label_ops import MaskPatch, apply_patch, selection_patch


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
    patch = interpolation_patch(mask, value, axis, document.image.spacing, paint_over=paint_over,
                                description=description)
    if patch.bbox is None:
        return None
    return apply_patch(document, history, patch)


def interpolate_job(document: Document, value: int, axis: int, *, paint_over: str = "empty",
                    description: str | None = None):
    """Zero-arg compute job on a snapshot of the mask (run it in a worker; hand its
    :class:`MaskPatch` to ``apply_patch`` on the GUI thread)."""
    mask = document.mask
    if mask is None or document.image is None:
        raise RuntimeError("no scan is open")
    _check_paint_over(paint_over)
    plane_axes(axis)
    snapshot, spacing, generation = mask.copy(), document.image.spacing, document.generation

    def job() -> MaskPatch:
        patch = interpolation_patch(snapshot, value, axis, spacing, paint_over=paint_over, description=description)
        patch.generation = generation
        return patch

    return job


def interpolation_patch(
    mask: np.ndarray,
    value: int,
    axis: int,
    spacing: tuple[float, float, float],
    *,
    paint_over: str = "empty",
    description: str | None = None,
) -> MaskPatch:
    """Compute step (pure; ``mask`` is not written): the voxels interpolation would set.

    ``patch.bbox`` is None when there is nothing to fill."""
    _check_paint_over(paint_over)
    desc = description or f"Interpolate label {value}"
    ra, ca = plane_axes(axis)
    present = mask == value
    keys = np.flatnonzero(present.any(axis=(ra, ca)))
    if keys.size < 2 or not np.any(np.diff(keys) > 1):
        return MaskPatch(desc, int(value))
    # in-plane crop around the label on every slice (plus a 1-voxel pad added below)
    rows = np.flatnonzero(present.any(axis=(axis, ca)))
    cols = np.flatnonzero(present.any(axis=(axis, ra)))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    sampling = (spacing[ra], spacing[ca])
    k0, k1 = int(keys[0]), int(keys[-1]) + 1
    box_l = [(0, 0)] * 3
    box_l[axis], box_l[ra], box_l[ca] = (k0, k1), (r0, r1), (c0, c1)
    box = cast(BBox, tuple(box_l))
    crop_present = present[tuple(slice(a, b) for a, b in box)]
    crop_mask = mask[tuple(slice(a, b) for a, b in box)]
    sel = np.zeros(crop_present.shape, dtype=bool)

    def plane(arr: np.ndarray, s: int) -> np.ndarray:
        return np.take(arr, s - k0, axis=axis)

    def phi(s: int) -> np.ndarray:
        return signed_distance(np.pad(plane(crop_present, s), 1), sampling)[1:-1, 1:-1]

    phi_b = phi(k0)
    for a, b in zip(keys[:-1].tolist(), keys[1:].tolist()):
        phi_a, phi_b = phi_b, phi(b)
        if b - a <= 1:
            continue
        for s in range(a + 1, b):
            t = (s - a) / (b - a)
            out = (1.0 - t) * phi_a + t * phi_b > 0
            if paint_over == "empty":
                out &= plane(crop_mask, s) == 0
            idx: list[slice | int] = [slice(None)] * 3
            idx[axis] = s - k0
            sel[tuple(idx)] = out
    return selection_patch(mask, box, sel, value, desc)


def _check_paint_over(paint_over: str) -> None:
    if paint_over not in ("empty", "all"):
        raise ValueError(f"paint_over must be 'empty' or 'all', got {paint_over!r}")
