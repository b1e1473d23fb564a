"""The lasso / polygon tool: a closed outline drawn on one slice fills or erases it (no Qt).

Press starts the outline at a point of a view's slice, each move adds a vertex (points on
another slice are ignored), release closes it and writes the inside -- voxel centres
inside the polygon, even-odd rule for an outline that crosses itself
(:func:`~desktop_app.state.lasso.polygon_selection`) -- as ONE undo entry, with the
active label (or 0 for an erase outline) under the brush's paint-over rule and
intensity limits. Fewer than three distinct points or no area raise
:class:`~desktop_app.state.lasso.LassoError` and change nothing; Esc (:meth:`cancel`)
drops the outline.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from desktop_app.state.brush import BrushSettings, apply_selection, intensity_ok, writable
from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, slice_bbox, to_slices
from desktop_app.state.history import History
from desktop_app.state.lasso import polygon_selection


class LassoStroke:
    """Vertices of an outline being drawn on slice ``slice_index`` of view ``axis``."""

    def __init__(self, document: Document, history: History, settings: BrushSettings, axis: int,
                 slice_index: int, *, erase: bool = False) -> None:
        if document.mask is None or document.image is None:
            raise RuntimeError("no scan is open")
        settings.validate()
        if not erase and not 0 < settings.label <= document.max_label_value:
            raise ValueError(f"label {settings.label} does not fit the mask (1..{document.max_label_value})")
        self.document, self.history = document, history
        self.settings = replace(settings)
        self.axis, self.slice_index, self.erase = int(axis), int(slice_index), erase
        self.points: list[tuple[float, float]] = []
        self.active = True

    def add(self, axis: int, slice_index: int, row: float, col: float) -> bool:
        """Add a vertex (state row/col of the view); False when it is on another slice."""
        if not self.active or (int(axis), int(slice_index)) != (self.axis, self.slice_index):
            return False
        if not self.points or self.points[-1] != (row, col):
            self.points.append((float(row), float(col)))
        return True

    def finish(self) -> BBox | None:
        """Close the outline and write its inside (one undo entry); the changed bbox."""
        if not self.active:
            return None
        self.active = False
        doc, s = self.document, self.settings
        mask = doc.mask
        assert mask is not None
        plane = [n for a, n in enumerate(mask.shape) if a != self.axis]
        inside = polygon_selection((plane[0], plane[1]), self.points)  # raises LassoError
        bbox = slice_bbox(mask.shape, self.axis, self.slice_index)
        sel = np.expand_dims(inside, self.axis)
        rule = writable(mask[to_slices(bbox)], s.paint_over, s.paint_over_label, self.erase, s.label)
        if rule is not None:
            sel = sel & rule
        if s.threshold is not None:
            sel = sel & intensity_ok(doc, bbox, s.threshold)
        with self.history.transaction("Lasso erase" if self.erase else "Lasso fill") as txn:
            return apply_selection(doc, txn, bbox, sel, 0 if self.erase else s.label)

    def cancel(self) -> None:
        """Drop the outline; nothing was written."""
        self.active = False
        self.points = []
