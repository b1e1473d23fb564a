"""Label-editor ops that change mask voxels: delete and merge, one undo step each (no Qt).

Table-only edits (add, rename, recolour, show/hide) are :class:`LabelTable` methods and
are not in the undo history; these two are, and undo brings back both the voxels and the
table entries.

Compute / apply split (also used by interpolation and fill holes): a slow one-shot op is
a pure *compute* step on a snapshot (a copy of the mask, safe in a worker thread) that
returns a :class:`MaskPatch` -- the changed bbox plus the voxels to set there -- and an
*apply* step, :func:`apply_patch`, on the GUI thread: one History transaction (one undo
entry) and one ``document.notify_mask_changed(bbox)``. ``MaskPatch.generation`` is the
``document.generation`` of the snapshot; :func:`apply_patch` refuses (raises
:class:`StalePatchError`) when the mask or label table changed since.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_of, to_slices
from desktop_app.state.history import History


class StalePatchError(RuntimeError):
    """The document changed between the snapshot and :func:`apply_patch`."""


@dataclass
class MaskPatch:
    """Result of a compute step: set ``value`` where ``sel`` (bool, ``bbox``-shaped), or,
    when ``values`` (``bbox``-shaped labels) is given, ``values`` where ``sel`` (a
    multi-label result such as grow-from-seeds; ``value`` is then unused)."""

    description: str
    value: int
    bbox: BBox | None = None
    sel: np.ndarray | None = None
    values: np.ndarray | None = None
    drop_labels: tuple[int, ...] = ()  # label-table entries removed (delete / merge)
    ensure_labels: tuple[int, ...] = ()  # entries added when missing (merge target)
    generation: int | None = None  # document.generation of the snapshot (None: no check)


def selection_patch(
    mask: np.ndarray, bbox: BBox | None, sel: np.ndarray | None, value: int, description: str, **kw
) -> MaskPatch:
    """Patch writing ``value`` into the ``sel`` voxels of ``bbox`` that differ from it,
    cropped to the bbox of what changes (pure: ``mask`` may be a snapshot)."""
    if bbox is None or sel is None:
        return MaskPatch(description, int(value), **kw)
    sel = sel & (mask[to_slices(bbox)] != value)
    changed = bbox_of(sel, (bbox[0][0], bbox[1][0], bbox[2][0]))
    if changed is None:
        return MaskPatch(description, int(value), **kw)
    local = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(changed, bbox))
    return MaskPatch(description, int(value), changed, np.ascontiguousarray(sel[local]), **kw)


def apply_patch(document: Document, history: History, patch: MaskPatch) -> BBox | None:
    """Write ``patch`` as ONE undo entry (``patch.description``) and announce its bbox
    once; returns the changed bbox (None when no voxel changed). GUI thread only."""
    mask = document.mask
    if mask is None:
        raise RuntimeError("no mask is open")
    if patch.generation is not None and document.generation != patch.generation:
        raise StalePatchError("the mask changed while the operation was computed")
    labels = document.labels
    changed = patch.bbox
    with history.transaction(patch.description) as txn:
        if changed is not None:
            assert patch.sel is not None
            txn.touch(changed)
            region = mask[to_slices(changed)]
            region[patch.sel] = patch.value if patch.values is None else patch.values[patch.sel]
            txn.changed(changed)
        for v in patch.drop_labels:
            if v in labels:
                txn.track_labels([v])
                labels.remove(v)
        for v in patch.ensure_labels:
            if v != 0 and v not in labels:
                txn.track_labels([v])
                labels.ensure([v])
    if changed is not None:
        document.notify_mask_changed(changed)
    return changed


def relabel_patch(mask: np.ndarray, source: int, target: int, description: str, drop: bool,
                  generation: int | None = None) -> MaskPatch:
    """Compute step of delete / merge / clear: every ``source`` voxel becomes ``target``."""
    present = mask == source
    bbox = bbox_of(present)
    sel = present[to_slices(bbox)] if bbox is not None else None
    return selection_patch(mask, bbox, sel, target, description, drop_labels=(source,) if drop else (),
                           ensure_labels=(target,) if target != 0 else (), generation=generation)


def delete_label_job(document: Document, value: int):
    """Zero-arg compute job for :func:`delete_label` on a snapshot (worker-safe)."""
    return _relabel_job(document, value, 0, f"Delete label {_name(document, value)}", drop=True)


def merge_labels_job(document: Document, source: int, target: int):
    """Zero-arg compute job for :func:`merge_labels` on a snapshot, or None when
    ``source == target`` (nothing to do)."""
    if source == target:
        return None
    if not 0 < target <= document.max_label_value:
        raise ValueError(f"label {target} does not fit the mask (1..{document.max_label_value})")
    desc = f"Merge {_name(document, source)} into {_name(document, target)}"
    return _relabel_job(document, source, target, desc, drop=True)


def _relabel_job(document: Document, source: int, target: int, description: str, drop: bool):
    if document.mask is None:
        raise RuntimeError("no mask is open")
    snapshot, generation = document.mask.copy(), document.generation

    def job() -> MaskPatch:
        return relabel_patch(snapshot, source, target, description, drop, generation)

    return job


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
    return apply_patch(document, history, relabel_patch(mask, source, target, description, drop))


def _name(document: Document, value: int) -> str:
    return document.labels[value].name if value in document.labels else f"label {value}"
