"""A proposed edit shown over the mask but not written into it yet (no Qt).

The interactive tools -- grow from seeds and click to segment -- compute a *result* in a
worker from the scan and the user's seeds or clicks. The views draw the seed strokes and
the result over the mask until the user **accepts** it, which writes it as ONE undo step
(:func:`preview_patch` + :func:`~desktop_app.state.label_ops.apply_patch`, honouring the
paint-over rule and the intensity limits of the brush settings), or **discards** it:
nothing in the mask or the history changed.

Seeds are sparse: per stroke, the label it seeds (:data:`BACKGROUND_SEED` = "none of the
labels") and the ``(N, 3)`` voxel coordinates ``(k, j, i)`` it covered. ``generation``
is bumped on every change, so a worker's result computed from older seeds is recognised
and dropped (:meth:`Preview.set_result` with ``generation=``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from psygnal import Signal

from desktop_app.state.brush import BrushSettings, intensity_ok, writable
from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_intersection, bbox_of, bbox_offset, bbox_union, slice_bbox, to_slices
from desktop_app.state.label_ops import MaskPatch

BACKGROUND_SEED = 0


@dataclass(frozen=True)
class SeedStrokeRecord:
    """The voxels one seed stroke covered and the label it seeds (0 = background)."""

    label: int
    coords: np.ndarray  # (N, 3) int (k, j, i)


def coords_bbox(coords: np.ndarray) -> BBox | None:
    """Bbox of ``(N, 3)`` voxel coordinates (None when empty)."""
    if len(coords) == 0:
        return None
    lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
    return cast(BBox, tuple((int(a), int(b)) for a, b in zip(lo, hi)))


class Preview:
    """Seeds and the tool's proposed labels, over the document's mask."""

    changed = Signal(object)  # bbox of the display change (None: redraw everything)

    def __init__(self) -> None:
        self.tool = ""  # the tool that owns the preview ("seeds" | "click" | "")
        self.description = ""
        self.bbox: BBox | None = None
        self.labels: np.ndarray | None = None  # bbox-shaped proposal, 0 = leave as is
        self.strokes: list[SeedStrokeRecord] = []
        self.generation = 0
        self._nonzero = False  # whether the result labels anything (kept, not rescanned)

    # ----- state -----------------------------------------------------------------------
    @property
    def has_result(self) -> bool:
        return self.bbox is not None and self.labels is not None and self._nonzero

    @property
    def active(self) -> bool:
        """True while there is anything to accept or discard."""
        return self.has_result or bool(self.strokes)

    def _touch(self, bbox: BBox | None) -> None:
        self.generation += 1
        self.changed.emit(bbox)

    # ----- seeds -----------------------------------------------------------------------
    def add_seed_stroke(self, label: int, coords: np.ndarray, tool: str = "seeds") -> None:
        """Record a finished (or growing) seed stroke."""
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
        if not len(coords):
            return
        self.tool = tool
        self.strokes.append(SeedStrokeRecord(int(label), coords))
        self._touch(coords_bbox(coords))

    def extend_last_stroke(self, coords: np.ndarray) -> None:
        """Add voxels to the stroke being drawn."""
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
        if not len(coords) or not self.strokes:
            return
        last = self.strokes[-1]
        self.strokes[-1] = SeedStrokeRecord(last.label, np.concatenate([last.coords, coords]))
        self._touch(coords_bbox(coords))

    def pop_stroke(self) -> bool:
        """Remove the last seed stroke (Esc mid-stroke, or "undo last seed"); True if any."""
        if not self.strokes:
            return False
        gone = self.strokes.pop()
        self._touch(coords_bbox(gone.coords))
        return True

    def seeds(self) -> dict[int, np.ndarray]:
        """Unique seed voxels per label; a voxel seeded twice keeps its latest label."""
        if not self.strokes:
            return {}
        coords = np.concatenate([s.coords for s in self.strokes])
        labels = np.concatenate([np.full(len(s.coords), s.label, dtype=np.int64) for s in self.strokes])
        # the last occurrence of each voxel wins
        _, first_rev = np.unique(coords[::-1], axis=0, return_index=True)
        keep = len(coords) - 1 - first_rev
        coords, labels = coords[keep], labels[keep]
        return {int(v): coords[labels == v] for v in np.unique(labels)}

    def seed_labels(self) -> set[int]:
        return {s.label for s in self.strokes}

    # ----- result ----------------------------------------------------------------------
    def set_result(self, bbox: BBox | None, labels: np.ndarray | None, description: str,
                   tool: str, generation: int | None = None) -> bool:
        """Show a worker's result; refused (False) when ``generation`` is given and the
        seeds changed since the worker started."""
        if generation is not None and generation != self.generation:
            return False
        old = self.bbox
        self.bbox, self.labels = (bbox, labels) if labels is not None and bbox is not None else (None, None)
        self._nonzero = self.labels is not None and bool(self.labels.any())
        self.description, self.tool = description, tool
        self.generation += 1
        self.changed.emit(bbox_union(old, self.bbox))
        return True

    def update_region(self, bbox: BBox) -> None:
        """The result's labels changed in place inside ``bbox`` (a streamed prediction
        filling its buffer): redraw only the views whose slice crosses it."""
        if self.bbox is not None and self.labels is not None and not self._nonzero:
            inner = bbox_intersection(bbox, self.bbox)
            self._nonzero = inner is not None and bool(self.labels[to_slices(bbox_offset(inner, self.bbox))].any())
        self.generation += 1
        self.changed.emit(bbox)

    def merge_result(self, bbox: BBox, sel: np.ndarray, label: int, description: str, tool: str) -> None:
        """Add ``label`` where ``sel`` (bbox-shaped bool) to the current result (clicks add up)."""
        union = bbox_union(self.bbox, bbox)
        assert union is not None
        merged = np.zeros(tuple(b - a for a, b in union), dtype=np.int64)
        if self.bbox is not None and self.labels is not None:
            merged[to_slices(bbox_offset(self.bbox, union))] = self.labels
        region = merged[to_slices(bbox_offset(bbox, union))]
        region[sel] = label
        self.set_result(union, merged, description, tool)

    def clear(self) -> None:
        """Forget seeds and result (discard, or after accept)."""
        if not self.active and self.bbox is None:
            return
        old = bbox_union(self.bbox, _strokes_bbox(self.strokes))
        self.tool, self.description = "", ""
        self.bbox, self.labels, self.strokes = None, None, []
        self._nonzero = False
        self._touch(old)

    # ----- display ---------------------------------------------------------------------
    def result_slice(self, shape: tuple[int, ...], axis: int, index: int) -> np.ndarray | None:
        """The proposal on slice ``index`` of ``axis`` as a 2D label image of that slice
        (0 = nothing proposed), or None when the slice shows none of it."""
        if self.bbox is None or self.labels is None:
            return None
        inter = bbox_intersection(self.bbox, slice_bbox(shape, axis, index))
        if inter is None:
            return None
        out = np.zeros([n for a, n in enumerate(shape) if a != axis], dtype=np.int64)
        part = self.labels[to_slices(bbox_offset(inter, self.bbox))]
        dst = tuple(slice(a, b) for ax, (a, b) in enumerate(inter) if ax != axis)
        out[dst] = np.take(part, 0, axis=axis)
        return out if out.any() else None

    def seed_slice(self, shape: tuple[int, ...], axis: int, index: int) -> np.ndarray | None:
        """Seeds on slice ``index`` of ``axis``: a 2D image holding ``label + 1`` where a
        seed is (1 = background seed, 0 = none), or None when the slice has none."""
        out: np.ndarray | None = None
        rest = [a for a in range(3) if a != axis]
        for stroke in self.strokes:
            on = stroke.coords[stroke.coords[:, axis] == index]
            if not len(on):
                continue
            if out is None:
                out = np.zeros([shape[a] for a in rest], dtype=np.int64)
            out[on[:, rest[0]], on[:, rest[1]]] = stroke.label + 1
        return out


def accept_job(document: Document, preview: Preview, brush: BrushSettings) -> Callable[[], MaskPatch]:
    """Zero-arg job computing the patch that accepting ``preview`` writes: its labelled
    voxels, where the paint-over rule and the intensity limits allow. The GUI thread
    copies only the proposal's box of the mask and scan; the job is worker-safe and its
    patch is refused by ``apply_patch`` if the mask changed meanwhile."""
    mask, image = document.mask, document.image
    if mask is None or image is None:
        raise RuntimeError("no mask is open")
    description = preview.description or "Accept preview"
    generation = document.generation
    if not preview.has_result:
        return lambda: MaskPatch(description, 0, generation=generation)
    bbox, labels = preview.bbox, preview.labels
    assert bbox is not None and labels is not None  # has_result
    labels = labels.copy()
    top = int(labels.max())
    if top > document.max_label_value:
        raise ValueError(f"label {top} does not fit the mask (1..{document.max_label_value})")
    region = mask[to_slices(bbox)].copy()
    inside = intensity_ok(document, bbox, brush.threshold) if brush.threshold is not None else None
    rules = (brush.paint_over, brush.paint_over_label)

    def job() -> MaskPatch:
        sel = labels != 0
        rule = writable(region, rules[0], rules[1], False, 0)
        if rule is not None:
            sel &= rule
        if inside is not None:
            sel &= inside
        sel &= region != labels
        changed = bbox_of(sel, (bbox[0][0], bbox[1][0], bbox[2][0]))
        if changed is None:
            return MaskPatch(description, 0, generation=generation)
        local = to_slices(bbox_offset(changed, bbox))
        present = tuple(int(v) for v in np.unique(labels[sel]))
        return MaskPatch(description, 0, changed, np.ascontiguousarray(sel[local]),
                         values=labels[local].astype(region.dtype), ensure_labels=present, generation=generation)

    return job


def _strokes_bbox(strokes: list[SeedStrokeRecord]) -> BBox | None:
    out: BBox | None = None
    for s in strokes:
        out = bbox_union(out, coords_bbox(s.coords))
    return out
