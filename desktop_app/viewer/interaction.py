"""Qt mouse/keys of one :class:`SliceView` -> :class:`~desktop_app.state.tools.ToolController`.

The view does the coordinate work: in any mode but ``"navigate"`` it emits
``voxel_pressed / voxel_dragged / voxel_released(axis, slice, row, col)`` for the left
button in :mod:`desktop_app.state.geometry`'s convention, which is exactly what
``ToolController.press / move / release`` take. This module adds:

* **erase with Shift**: Shift + left-drag is an eraser stroke with the brush tool (the
  right button stays window/level, as the view reserves it);
* **Esc** while the button is held cancels the stroke (its voxels are restored);
* a **brush outline** that follows the mouse: the exact set of voxels one dab would
  cover on this slice (:meth:`BrushSettings.footprint_2d`), drawn as a voxel-edged path in
  the active label's colour (white for the eraser).

Placement of the outline: a dab at point ``p`` is centred on ``c = brush.center(p)``
(a voxel centre, or a voxel corner for even voxel sizes) and its footprint is symmetric
about ``c``, so the footprint image of shape ``(R, C)`` covers voxels
``c - (R - 1) / 2 .. c + (R - 1) / 2`` per axis: the outline edges sit at
``c + e - R / 2`` for edge indices ``e = 0..R``.
"""

from __future__ import annotations

import logging
from dataclasses import astuple
from typing import cast

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.geometry import plane_axes, view_to_kji
from desktop_app.state.tools import ToolController
from desktop_app.viewer.slice_view import SliceView
from unet_engine.volume import float3
from desktop_app.signals import disconnect_all

log = logging.getLogger(__name__)

ERASE_MODIFIER = QtCore.Qt.KeyboardModifier.ShiftModifier
#: Mouse bindings of the editing tools (for Help > Shortcuts and tooltips).
TOOL_MOUSE_HELP: tuple[tuple[str, str], ...] = (
    ("Left-drag (brush)", "Paint the active label"),
    ("Shift + left-drag (brush)", "Erase (the active label, or as the paint-over rule says)"),
    ("Left-click (fill)", "Flood-fill the clicked region of the slice"),
    ("Left-drag (grow)", "Paint seeds of the active label; Shift + left-drag: background seeds"),
    ("Left-click (click)", "Grow a region from the clicked voxel; Shift + left-click removes one"),
    ("Left-drag (lasso)", "Draw an outline; release fills it (Shift: erases it)"),
    ("Enter / Esc (preview)", "Accept / discard the grow or click preview"),
    ("Esc (while dragging)", "Cancel the stroke"),
)
#: Tools that show the brush outline under the mouse.
BRUSH_CURSOR_TOOLS = ("brush", "eraser", "smart_brush", "seeds")


def footprint_edges(fp: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Boundary segments ``(r0, c0, r1, c1)`` of a boolean image, in edge coordinates
    (pixel ``(r, c)`` spans ``[r, r + 1] x [c, c + 1]``); collinear runs are merged."""
    fp = np.asarray(fp, dtype=bool)
    p = np.pad(fp, 1)
    out: list[tuple[float, float, float, float]] = []
    # horizontal edges at row line e (between pixel rows e-1 and e): e = 0..R
    h = p[1:, 1:-1] != p[:-1, 1:-1]  # shape (R + 1, C)
    for e in range(h.shape[0]):
        for c0, c1 in _runs(h[e]):
            out.append((float(e), float(c0), float(e), float(c1)))
    v = p[1:-1, 1:] != p[1:-1, :-1]  # shape (R, C + 1)
    for e in range(v.shape[1]):
        for r0, r1 in _runs(v[:, e]):
            out.append((float(r0), float(e), float(r1), float(e)))
    return out


def _runs(line: np.ndarray) -> list[tuple[int, int]]:
    """Start/end (exclusive) of the True runs of a 1D boolean array."""
    d = np.diff(np.concatenate(([0], line.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


class BrushCursor(QtWidgets.QGraphicsPathItem):
    """Outline of the voxels a dab would paint, in the view's display millimetres."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(30)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        self.set_colour((255, 255, 255))
        self._key: tuple | None = None
        self.hide()

    def set_colour(self, rgb: tuple[int, int, int]) -> None:
        pen = QtGui.QPen(QtGui.QColor(*rgb, 230))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        self.setPen(pen)


class LassoPath(QtWidgets.QGraphicsPathItem):
    """The outline being drawn with the lasso, in the view's display millimetres."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(31)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        pen = QtGui.QPen(QtGui.QColor(255, 255, 0, 230))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        self.setPen(pen)
        self.hide()


class ViewInteraction(QtCore.QObject):
    """Routes one view's tool signals to a :class:`ToolController` and draws the brush cursor."""

    stroke_finished = QtCore.Signal(bool)  # True when the stroke became an undo entry

    def __init__(self, view: SliceView, tools: ToolController, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.tools = tools
        self.cursor = BrushCursor()
        view.viewbox.addItem(self.cursor, ignoreBounds=True)
        self.lasso_path = LassoPath()
        view.viewbox.addItem(self.lasso_path, ignoreBounds=True)
        self._press_modifiers = QtCore.Qt.KeyboardModifier.NoModifier
        self._last_hover: tuple[int, int, float, float] | None = None
        self.cursor_enabled = True
        view.voxel_pressed.connect(self._on_press)
        view.voxel_dragged.connect(self._on_drag)
        view.voxel_released.connect(self._on_release)
        view.voxel_hovered.connect(self._on_hover)
        view.hover_left.connect(self._on_leave)
        view.canvas.viewport().installEventFilter(self)
        view.canvas.installEventFilter(self)

    # ----- Qt events -------------------------------------------------------------------
    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:
        t = ev.type()
        if t == QtCore.QEvent.Type.MouseButtonPress:
            self._press_modifiers = cast(QtGui.QMouseEvent, ev).modifiers()
        elif t in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.ShortcutOverride):
            if cast(QtGui.QKeyEvent, ev).key() == QtCore.Qt.Key.Key_Escape and self.tools.stroke_active:
                if t == QtCore.QEvent.Type.ShortcutOverride:
                    ev.accept()  # Esc cancels the stroke even if some action uses it as a shortcut
                    return False
                self.tools.cancel()
                self.lasso_path.hide()
                return True
        return False

    # ----- tool signals ----------------------------------------------------------------
    @property
    def painting(self) -> bool:
        return self.view.left_button_mode != "navigate"

    def _on_press(self, axis: int, index: int, row: float, col: float) -> None:
        doc = self.tools.document
        erase = bool(self._press_modifiers & ERASE_MODIFIER)
        label = self.tools.brush.label
        if not erase and self.tools.tool != "eraser" and label not in doc.labels and doc.mask is not None:
            if 0 < label <= doc.max_label_value:
                doc.labels.ensure([label])  # paint a value the table does not list yet: name it
        try:
            self.tools.press(axis, index, row, col, erase=erase)
        except ValueError as exc:  # e.g. a label value that does not fit the mask
            log.warning("tool press refused: %s", exc)
            self._show_status(str(exc))
        self._update_lasso()

    def _on_drag(self, axis: int, index: int, row: float, col: float) -> None:
        self.tools.move(axis, index, row, col)  # the outline already followed: voxel_hovered
        self._update_lasso()

    def _on_release(self, axis: int, index: int, row: float, col: float) -> None:
        if self.tools.stroke_active:
            self.tools.move(axis, index, row, col)
        self.lasso_path.hide()
        try:
            done = self.tools.release()
        except ValueError as exc:  # e.g. a lasso with fewer than three points
            self._show_status(str(exc))
            done = False
        self.stroke_finished.emit(done)

    def _update_lasso(self) -> None:
        """Follow the lasso outline being drawn (closed back to its first point)."""
        points, g = self.tools.lasso_points, self.view.geometry_info
        if not points or g is None:
            self.lasso_path.hide()
            return
        path = QtGui.QPainterPath()
        for n, (row, col) in enumerate(points + points[:1]):
            x, y = g.crosshair_mm(view_to_kji(g.axis, self.view.slice_index, row, col))
            (path.moveTo if n == 0 else path.lineTo)(QtCore.QPointF(x, y))
        self.lasso_path.setPath(path)
        self.lasso_path.show()

    def _show_status(self, text: str) -> None:
        window = self.view.window()
        if isinstance(window, QtWidgets.QMainWindow):
            window.statusBar().showMessage(text, 5000)

    # ----- brush cursor ----------------------------------------------------------------
    def _on_hover(self, axis: int, index: int, row: float, col: float) -> None:
        self._last_hover = (axis, index, row, col)
        self.update_cursor()

    def _on_leave(self) -> None:
        self._last_hover = None
        self.cursor.hide()

    def update_cursor(self) -> None:
        """Redraw the outline at the last hovered point (after a settings change too)."""
        g, doc, tools = self.view.geometry_info, self.tools.document, self.tools
        hover, image = self._last_hover, doc.image
        show = (self.cursor_enabled and self.painting and hover is not None and g is not None
                and image is not None and tools.tool in BRUSH_CURSOR_TOOLS)
        if not show or hover is None or g is None or image is None:
            self.cursor.hide()
            return
        axis, index, row, col = hover
        if axis != g.axis:
            self.cursor.hide()
            return
        brush = tools.brush
        try:
            brush.validate()
        except ValueError:
            self.cursor.hide()
            return
        spacing = image.spacing
        key = (astuple(brush)[:3], axis, spacing, g)
        if key != self.cursor._key:
            self.cursor.setPath(self._outline_path(brush.footprint_2d(axis, spacing)))
            self.cursor._key = key
        centre = brush.center(axis, view_to_kji(axis, index, row, col))
        x, y = g.crosshair_mm(float3(centre))
        self.cursor.setPos(x, y)
        erase = tools.tool == "eraser" or bool(QtWidgets.QApplication.keyboardModifiers() & ERASE_MODIFIER)
        lab = doc.labels.labels.get(brush.label)
        self.cursor.set_colour((255, 255, 255) if erase or lab is None else lab.colour)
        self.cursor.show()

    def _outline_path(self, fp: np.ndarray) -> QtGui.QPainterPath:
        """The footprint's outline relative to the dab centre, in display mm."""
        g = self.view.geometry_info
        assert g is not None
        ra, ca = plane_axes(g.axis)
        n_r, n_c = fp.shape
        # per state axis: mm per voxel along the display, signed by the flips
        sign = {g.row_axis: -1.0 if g.row_flip else 1.0, g.col_axis: -1.0 if g.col_flip else 1.0}

        def to_mm(er: float, ec: float) -> QtCore.QPointF:
            off = {ra: er - n_r / 2.0, ca: ec - n_c / 2.0}
            dr = off[g.row_axis] * sign[g.row_axis]
            dc = off[g.col_axis] * sign[g.col_axis]
            return QtCore.QPointF(dc * g.col_spacing, dr * g.row_spacing)

        path = QtGui.QPainterPath()
        for r0, c0, r1, c1 in footprint_edges(fp):
            path.moveTo(to_mm(r0, c0))
            path.lineTo(to_mm(r1, c1))
        return path

    def covered_voxels(self) -> set[tuple[int, int]] | None:
        """State ``(row, col)`` voxels inside the drawn outline (for tests): from the
        footprint and the current centre, as the outline is placed."""
        if not self.cursor.isVisible() or self._last_hover is None:
            return None
        axis, index, row, col = self._last_hover
        brush, image = self.tools.brush, self.tools.document.image
        assert image is not None  # the outline shows only over a scan
        fp = brush.footprint_2d(axis, image.spacing)
        c = brush.center(axis, view_to_kji(axis, index, row, col))
        ra, ca = plane_axes(axis)
        o_r, o_c = c[ra] - (fp.shape[0] - 1) / 2.0, c[ca] - (fp.shape[1] - 1) / 2.0
        return {(int(round(o_r + r)), int(round(o_c + cc))) for r, cc in np.argwhere(fp)}

    def detach(self) -> None:
        disconnect_all([(self.view.voxel_pressed, self._on_press), (self.view.voxel_dragged, self._on_drag),
                        (self.view.voxel_released, self._on_release), (self.view.voxel_hovered, self._on_hover),
                        (self.view.hover_left, self._on_leave)], ignore=(RuntimeError, TypeError))
