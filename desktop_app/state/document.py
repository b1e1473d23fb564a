"""The open document: scan, label mask, labels, cursor, with events (no Qt).

Only the GUI thread changes a Document; workers receive copies and hand back new arrays.
Views listen to the events and redraw only what changed:

* ``image_changed()``: a new scan (and mask) was loaded.
* ``mask_changed(bbox)``: voxels inside ``bbox`` (``((k0, k1), (j0, j1), (i0, i1))``, end
  exclusive) changed; ``None`` means the whole mask.
* ``cursor_changed(kji)``: the linked crosshair moved.
* ``uncertainty_changed()``: the model's uncertainty map was set or cleared.
* ``mask_replaced()``: ``replace_mask`` swapped in a new array outside the undo history
  (emitted before ``mask_changed(None)``; the history clears itself on it).

``generation`` counts every change to the mask or the label table (the autosave journal
compares it from its own thread to know whether there is anything new to write).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from psygnal import Signal

from desktop_app.state.geometry import BBox
from desktop_app.state.intensity import IntensityStats
from desktop_app.state.labels import LabelTable
from unet_engine.volume import Volume, int3

__all__ = ["BBox", "Document"]


def label_values_present(mask: np.ndarray) -> set[int]:
    """Label values in ``mask`` (fast: one bincount pass for uint8/uint16, nothing for an empty mask)."""
    if not mask.any():
        return set()
    if mask.dtype in (np.uint8, np.uint16):
        counts = np.bincount(mask.reshape(-1), minlength=1)
        return {int(v) for v in np.flatnonzero(counts)}
    return {int(v) for v in np.unique(mask).tolist()}


class Document:
    image_changed = Signal()
    mask_changed = Signal(object)
    cursor_changed = Signal(object)
    uncertainty_changed = Signal()
    dirty_changed = Signal(bool)
    mask_replaced = Signal()

    def __init__(self) -> None:
        self.image: Volume | None = None
        self.mask: np.ndarray | None = None
        self.labels = LabelTable()
        self.uncertainty: np.ndarray | None = None
        self.intensity_stats: IntensityStats | None = None  # of the open scan (histogram, range)
        self.cursor: tuple[int, int, int] = (0, 0, 0)
        self.mask_path: Path | None = None
        self._dirty = False
        self._generation = 0
        self.labels.changed.connect(self._bump)

    # ----- loading -----------------------------------------------------------------------
    def set_image(self, volume: Volume, mask: np.ndarray | None = None, mask_path: Path | None = None,
                  stats: IntensityStats | None = None) -> None:
        """Show a new scan; ``mask`` (same spatial shape) or an empty uint8 mask over it;
        ``stats``: the scan's intensity statistics, computed by the load job (see
        :mod:`desktop_app.state.intensity`)."""
        if mask is None:
            mask = np.zeros(volume.shape, dtype=np.uint8)
        if tuple(mask.shape) != volume.shape:
            raise ValueError(f"mask shape {mask.shape} does not match scan shape {volume.shape}")
        self.image = volume
        self.intensity_stats = stats
        self.mask = np.ascontiguousarray(mask)
        self.mask_path = mask_path
        self.uncertainty = None
        self.cursor = int3(n // 2 for n in volume.shape)
        self.labels.ensure(label_values_present(self.mask))
        self._bump()
        self._set_dirty(False)
        self.image_changed.emit()
        self.cursor_changed.emit(self.cursor)

    def replace_mask(self, mask: np.ndarray, mask_path: Path | None = None, dirty: bool = True) -> None:
        """Swap in a whole new mask (e.g. opened from disk)."""
        if self.image is None or tuple(mask.shape) != self.image.shape:
            raise ValueError("mask does not match the open scan")
        self.mask = np.ascontiguousarray(mask)
        if mask_path is not None:
            self.mask_path = mask_path
        self.labels.ensure(label_values_present(self.mask))
        self._bump()
        self._set_dirty(dirty)
        self.mask_replaced.emit()
        self.mask_changed.emit(None)

    def set_uncertainty(self, uncertainty: np.ndarray | None) -> None:
        self.uncertainty = uncertainty
        self.uncertainty_changed.emit()

    # ----- editing -----------------------------------------------------------------------
    def notify_mask_changed(self, bbox: BBox | None) -> None:
        """Called by tools/history after they wrote into ``self.mask`` in place."""
        self._bump()
        self._set_dirty(True)
        self.mask_changed.emit(bbox)

    def mark_saved(self, path: Path) -> None:
        self.mask_path = path
        self._set_dirty(False)

    @property
    def generation(self) -> int:
        """Bumped on every mask or label-table change (read from any thread)."""
        return self._generation

    @property
    def max_label_value(self) -> int:
        """Largest label value the mask's dtype can hold (255 for uint8)."""
        if self.mask is None:
            return 255
        return int(np.iinfo(self.mask.dtype).max)

    def _bump(self) -> None:
        self._generation += 1

    @property
    def dirty(self) -> bool:
        return self._dirty

    def _set_dirty(self, value: bool) -> None:
        if value != self._dirty:
            self._dirty = value
            self.dirty_changed.emit(value)

    # ----- cursor ------------------------------------------------------------------------
    def set_cursor(self, kji: tuple[int, int, int]) -> None:
        """Move the linked crosshair (clamped to the volume)."""
        if self.image is None:
            return
        clamped = int3(min(max(v, 0), n - 1) for v, n in zip(kji, self.image.shape))
        if clamped != self.cursor:
            self.cursor = clamped
            self.cursor_changed.emit(self.cursor)

    @property
    def has_image(self) -> bool:
        return self.image is not None
