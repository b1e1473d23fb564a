"""Label-editor ops that change mask voxels: delete and merge, one undo step each (no Qt).

Table-only edits (add, rename, recolour, show/hide) are :class:`LabelTable` methods and
are not in the undo history; these two are, and undo brings back both the voxels and the
table entries.
"""

from __future__ import annotations

import numpy as np

from desktop_app.state.brush import apply_selection
from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_of, to_slices
from desktop_app.state.history import History


def delete_label(document: Document, history: History, value: int) -> BBox | None:
    """Set every voxel of ``value`` to 0 and drop its table entry (one undo step)."""
    return _relabel(document, history, value, 0, f"Delete label {_name(document, value)}", drop=True)


def merge_labels(document: Document, history: History, source: int, target: int) -> BBox | None:
    """Relabel every voxel of ``source`` as ``target`` and drop ``source`` (one undo step)."""
    if source == target:
        return None
    if not 0 < target <= document.max_label_value:
        raise ValueError(f"label {target} does not fit the mask (1..{document.max_label_value})")
    desc = f"Merge {_name(document, source)} into {_name(document, target)}"
    return _relabel(document, history, source, target, desc, drop=True)


def clear_label_voxels(document: Document, history: History, value: int) -> BBox | None:
    """Set every voxel of ``value`` to 0, keeping the label in the table (one undo step)."""
    return _relabel(document, history, value, 0, f"Clear label {_name(document, value)}", drop=False)


def label_voxel_counts(mask: np.ndarray) -> dict[int, int]:
    """Voxel count per non-zero label value (for the label panel)."""
    if mask.dtype.kind == "u" and mask.dtype.itemsize <= 2:
        counts = np.zeros(int(np.iinfo(mask.dtype).max) + 1, dtype=np.int64)
        for k0 in range(0, mask.shape[0], 16):
            slab = np.bincount(mask[k0:k0 + 16].ravel(), minlength=counts.size)
            counts += slab
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts) if v != 0}
    values, counts = np.unique(mask, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if v != 0}


def _relabel(
    document: Document, history: History, source: int, target: int, description: str, drop: bool
) -> BBox | None:
    mask = document.mask
    if mask is None:
        raise RuntimeError("no mask is open")
    present = mask == source
    bbox = bbox_of(present)
    with history.transaction(description) as txn:
        changed = None
        if bbox is not None:
            changed = apply_selection(document, txn, bbox, present[to_slices(bbox)], target)
        if drop and source in document.labels:
            txn.track_labels([source])
            document.labels.remove(source)
        if target != 0 and target not in document.labels:
            txn.track_labels([target])
            document.labels.ensure([target])
    return changed


def _name(document: Document, value: int) -> str:
    return document.labels[value].name if value in document.labels else f"label {value}"
