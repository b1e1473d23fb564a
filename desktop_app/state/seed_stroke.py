"""Seed strokes for grow-from-seeds: the brush's footprint, recorded as seeds (no Qt).

A seed stroke sweeps the brush exactly as a paint stroke does (same size, shape, unit,
2D/3D mode and gap-free segments, :mod:`desktop_app.state.brush`) but writes nothing
into the mask: the covered voxels become seeds of the active label -- or background
seeds (:data:`~desktop_app.state.preview.BACKGROUND_SEED`) for an erase stroke -- in the
document's :class:`~desktop_app.state.preview.Preview`. Voxels outside the intensity
limits are not seeded (they can never be labelled either).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from desktop_app.state.brush import BrushPath, BrushSettings, intensity_ok
from desktop_app.state.document import Document
from desktop_app.state.preview import BACKGROUND_SEED, Preview


class SeedStroke:
    """One press-move-release of the seed brush; Esc (:meth:`cancel`) removes it."""

    def __init__(self, document: Document, preview: Preview, settings: BrushSettings, *,
                 background: bool = False) -> None:
        if document.image is None:
            raise RuntimeError("no scan is open")
        settings.validate()
        self.document, self.preview = document, preview
        self.settings = replace(settings)
        self.label = BACKGROUND_SEED if background else int(settings.label)
        if self.label != BACKGROUND_SEED and not 0 < self.label <= document.max_label_value:
            raise ValueError(f"label {self.label} does not fit the mask (1..{document.max_label_value})")
        self.path = BrushPath(self.settings, document.image.spacing, document.image.shape)
        self._started = False
        self.active = True

    def dab(self, axis: int, slice_index: int, row: float, col: float) -> int:
        """Seed the brush swept from the previous point; returns the voxels added."""
        if not self.active:
            return 0
        swept = self.path.sweep(axis, slice_index, row, col)
        if swept is None:
            return 0
        bbox, sel, _centre = swept
        s = self.settings
        if s.threshold is not None and self.label != BACKGROUND_SEED:
            sel &= intensity_ok(self.document, bbox, s.threshold)
        coords = np.argwhere(sel) + np.array([bbox[0][0], bbox[1][0], bbox[2][0]])
        if not len(coords):
            return 0
        if self._started:
            self.preview.extend_last_stroke(coords)
        else:
            self.preview.add_seed_stroke(self.label, coords)
            self._started = True
        return len(coords)

    def finish(self) -> bool:
        """End the stroke; True when it seeded anything."""
        self.active = False
        return self._started

    def cancel(self) -> None:
        """Remove what this stroke seeded."""
        if self.active and self._started:
            self.preview.pop_stroke()
        self.active = False
