"""Fill tools: 2D flood fill from a seed and "fill holes in a label" (no Qt).

Each call is one undo entry and announces the changed bbox via
``document.notify_mask_changed``. Fill holes is split into a pure compute step on a mask
snapshot (:func:`fill_holes_patch`, :func:`fill_holes_job` for a worker thread) and
:func:`~desktop_app.state.label_ops.apply_patch` on the GUI thread.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from desktop_app.state.brush import apply_selection, intensity_ok, writable
from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_of, plane_axes, slice_bbox, to_slices
from desktop_app.state.history import History
from desktop_app.state.label_ops import MaskPatch, apply_patch, selection_patch

_FOUR = ndimage.generate_binary_structure(2, 1)


def flood_fill(
    document: Document,
    history: History,
    axis: int,
    slice_index: int,
    row: int,
    col: int,
    value: int,
    *,
    paint_over: str = "all",
    paint_over_label: int = 0,
    threshold: tuple[float, float] | None = None,
    description: str = "Fill",
) -> BBox | None:
    """Set to ``value`` the 4-connected region, on one slice of view ``axis``, of voxels
    with the seed's mask value (and, with ``threshold``, an intensity in ``[lo, hi]``).

    The paint-over rule applies as for the brush (the region has one value, so it fills
    entirely or not at all). Returns the changed bbox, or None when nothing changed
    (seed already ``value``, outside the threshold or the volume, or protected)."""
    mask = document.mask
    if mask is None:
        raise RuntimeError("no mask is open")
    if not 0 <= value <= document.max_label_value:
        raise ValueError(f"label {value} does not fit the mask (0..{document.max_label_value})")
    row, col, slice_index = int(round(row)), int(round(col)), int(round(slice_index))
    ra, ca = plane_axes(axis)
    if not (0 <= slice_index < mask.shape[axis] and 0 <= row < mask.shape[ra] and 0 <= col < mask.shape[ca]):
        return None
    bbox = slice_bbox(mask.shape, axis, slice_index)
    plane = np.take(mask, slice_index, axis=axis)
    seed_value = int(plane[row, col])
    if seed_value == value:
        return None
    same = plane == seed_value
    if threshold is not None:
        same &= _squeeze(intensity_ok(document, bbox, threshold), axis)
        if not same[row, col]:
            return None
    rule = writable(np.asarray([seed_value]), paint_over, paint_over_label, False, value)
    if rule is not None and not bool(rule[0]):
        return None
    labelled, _ = ndimage.label(same, structure=_FOUR)
    region = labelled == labelled[row, col]
    sel = np.expand_dims(region, axis)
    with history.transaction(description) as txn:
        return apply_selection(document, txn, bbox, sel, value)


def fill_holes(
    document: Document,
    history: History,
    value: int,
    *,
    mode: str = "3d",
    axis: int = 0,
    paint_over: str = "empty",
    description: str | None = None,
) -> BBox | None:
    """Fill the holes of label ``value`` (as ``scipy.ndimage.binary_fill_holes`` does).

    ``mode="3d"`` fills cavities enclosed in 3D; ``mode="2d"`` fills, slice by slice of
    view ``axis``, regions enclosed in each slice. By default only empty voxels are
    filled (``paint_over="empty"``); ``"all"`` also overwrites other labels inside.
    Compute (:func:`fill_holes_patch`) + :func:`~desktop_app.state.label_ops.apply_patch`."""
    mask = document.mask
    if mask is None:
        raise RuntimeError("no mask is open")
    patch = fill_holes_patch(mask, value, mode=mode, axis=axis, paint_over=paint_over, description=description)
    if patch.bbox is None:
        return None
    return apply_patch(document, history, patch)


def fill_holes_job(document: Document, value: int, *, mode: str = "3d", axis: int = 0,
                   paint_over: str = "empty", description: str | None = None):
    """Zero-arg compute job on a snapshot of the mask (run it in a worker; hand its
    :class:`MaskPatch` to ``apply_patch`` on the GUI thread)."""
    mask = document.mask
    if mask is None:
        raise RuntimeError("no mask is open")
    _check_fill_args(mode, axis, paint_over)
    snapshot, generation = mask.copy(), document.generation

    def job() -> MaskPatch:
        patch = fill_holes_patch(snapshot, value, mode=mode, axis=axis, paint_over=paint_over,
                                 description=description)
        patch.generation = generation
        return patch

    return job


def fill_holes_patch(
    mask: np.ndarray,
    value: int,
    *,
    mode: str = "3d",
    axis: int = 0,
    paint_over: str = "empty",
    description: str | None = None,
) -> MaskPatch:
    """Compute step of :func:`fill_holes` (pure; ``mask`` may be a snapshot)."""
    _check_fill_args(mode, axis, paint_over)
    desc = description or f"Fill holes in label {value}"
    present = mask == value
    bbox = bbox_of(present)
    if bbox is None:
        return MaskPatch(desc, int(value))
    sl = to_slices(bbox)
    binary = present[sl]
    del present
    if mode == "3d":
        filled = binary_fill_holes(binary)
    else:
        filled = np.empty_like(binary)
        for s in range(binary.shape[axis]):
            idx: list[slice | int] = [slice(None)] * 3
            idx[axis] = s
            filled[tuple(idx)] = binary_fill_holes(binary[tuple(idx)])
    sel = filled & ~binary
    if paint_over == "empty":
        sel &= mask[sl] == 0
    return selection_patch(mask, bbox, sel, value, desc)


def _check_fill_args(mode: str, axis: int, paint_over: str) -> None:
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
    plane_axes(axis)
    if paint_over not in ("empty", "all"):
        raise ValueError(f"paint_over must be 'empty' or 'all', got {paint_over!r}")


def binary_fill_holes(binary: np.ndarray) -> np.ndarray:
    """Same result as ``scipy.ndimage.binary_fill_holes`` (default structure), computed by
    labelling the background once and keeping the components that touch the array's
    border: ~2.7x faster than scipy's iterated dilation on a 240x300x300 label."""
    if binary.size == 0:
        return binary.copy()
    structure = ndimage.generate_binary_structure(binary.ndim, 1)
    labels, n = ndimage.label(~binary, structure=structure)
    if n == 0:
        return binary.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for ax in range(binary.ndim):
        for end in (0, -1):
            outside[np.unique(np.take(labels, end, axis=ax))] = True
    outside[0] = True  # label 0 = the shape itself
    return binary | ~outside[labels]


def _squeeze(arr: np.ndarray, axis: int) -> np.ndarray:
    return np.take(arr, 0, axis=axis)
