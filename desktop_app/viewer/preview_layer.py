"""Draws the interactive tools' preview on one slice view: seeds and the proposed labels.

Seed strokes are drawn in their label's colour, fully opaque (background seeds in a
light grey with a blue tint, so they read as "not this"); the proposal of grow from
seeds / click to segment is drawn in the label colours, tinted and with a solid
outline, above the mask so the user sees what Accept would write. The layer redraws when
the :class:`~desktop_app.state.preview.Preview` announces a change on its slice and
whenever the view redraws its slice.
"""

from __future__ import annotations

import numpy as np

from desktop_app.state.preview import Preview
from desktop_app.viewer.image_items import DisplayImageItem
from desktop_app.viewer.overlay import label_outline
from desktop_app.viewer.slice_geometry import PlaneGeometry
from desktop_app.signals import disconnect_all

BACKGROUND_SEED_RGBA = (200, 215, 255, 235)
RESULT_ALPHA = 110


def plane_to_display(g: PlaneGeometry, plane: np.ndarray) -> np.ndarray:
    """A 2D array over a slice in state order (remaining axes increasing) -> display order."""
    view = plane if g.row_axis < g.col_axis else plane.swapaxes(0, 1)
    return view[:: -1 if g.row_flip else 1, :: -1 if g.col_flip else 1]


def preview_rgba(result: np.ndarray | None, seeds: np.ndarray | None, lut: np.ndarray,
                 shape: tuple[int, int]) -> np.ndarray:
    """RGBA image of a slice's proposal (``result``: labels, 0 = none) and seeds
    (``label + 1``, 1 = background, 0 = none), both in display order."""
    out = np.zeros((*shape, 4), dtype=np.uint8)
    if result is not None:
        lab = np.clip(result, 0, len(lut) - 1)
        inside = lab > 0
        out[inside] = lut[lab[inside]]
        out[inside, 3] = RESULT_ALPHA
        edge = label_outline(lab) > 0
        out[edge] = lut[lab[edge]]
        out[edge, 3] = 255
    if seeds is not None:
        seeded = seeds > 0
        lab = np.clip(seeds - 1, 0, len(lut) - 1)
        out[seeded] = lut[lab[seeded]]
        out[seeded, 3] = 255
        out[seeds == 1] = BACKGROUND_SEED_RGBA
    return out


class PreviewLayer:
    """The preview image item of one :class:`~desktop_app.viewer.slice_view.SliceView`."""

    def __init__(self, view, preview: Preview) -> None:
        self.view, self.preview = view, preview
        self.item = DisplayImageItem(opaque=False)
        self.item.setZValue(12)
        self.item.hide()
        view.viewbox.addItem(self.item)
        self.redraws = 0
        preview.changed.connect(self._on_changed)

    def _on_changed(self, bbox) -> None:
        g = self.view.geometry_info
        if g is not None and g.slice_in_bbox(self.view.slice_index, bbox):
            self.refresh()

    def refresh(self) -> None:
        """Redraw the preview of the view's current slice (hide when it has none)."""
        g, doc = self.view.geometry_info, self.view.document
        if g is None or doc.image is None or not self.preview.active:
            self.item.hide()
            return
        shape = doc.image.shape
        result = self.preview.result_slice(shape, g.axis, self.view.slice_index)
        seeds = self.preview.seed_slice(shape, g.axis, self.view.slice_index)
        if result is None and seeds is None:
            self.item.hide()
            return
        disp = (g.n_rows, g.n_cols)
        rgba = preview_rgba(None if result is None else plane_to_display(g, result),
                            None if seeds is None else plane_to_display(g, seeds), self.view.label_lut, disp)
        self.item.setTransform(self.view.image_item.transform())
        self.item.setImage(rgba, autoLevels=False)
        self.item.show()
        self.redraws += 1

    def detach(self) -> None:
        disconnect_all([(self.preview.changed, self._on_changed)])
        self.view.viewbox.removeItem(self.item)
