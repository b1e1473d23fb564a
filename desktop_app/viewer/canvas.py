"""The pyqtgraph canvas inside a SliceView: routes mouse buttons and the wheel.

Left button, right button and the plain wheel go to the owning SliceView (crosshair or
tool, window/level, slice); middle-drag (pan) and Ctrl+wheel (zoom) go to pyqtgraph's
ViewBox as usual.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui


class SliceCanvas(pg.GraphicsView):
    """GraphicsView that routes mouse buttons: left/right/wheel to the SliceView, the
    rest (middle-drag pan, Ctrl+wheel zoom) to pyqtgraph's ViewBox."""

    def __init__(self, owner) -> None:
        self._owner = owner
        super().__init__(background="k")
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self._wheel_accum = 0
        self._right_last: QtCore.QPointF | None = None
        self._left_down = False
        self.info = ""
        self._info_rect = QtCore.QRect()

    # ----- corner caption ----------------------------------------------------------------
    def set_info(self, text: str) -> None:
        """Caption drawn in the top-left corner by :meth:`drawForeground`: part of the
        view's own paint, so a slice change costs one repaint, not two (a QLabel child
        here made Qt repaint the view a second time for the label's area)."""
        if text != self.info:
            self.info = text
            area = self._info_rect.adjusted(-2, -2, 80, 2) if not self._info_rect.isNull() else QtCore.QRect(0, 0, 260, 30)
            # through the scene, so it is batched with the image's own update (one paint)
            self.scene().update(self.mapToScene(area).boundingRect())

    def drawForeground(self, painter: QtGui.QPainter, rect) -> None:
        super().drawForeground(painter, rect)
        if not self.info:
            return
        painter.save()
        painter.resetTransform()
        font = painter.font()
        font.setPixelSize(11)
        painter.setFont(font)
        metrics = QtGui.QFontMetrics(font)
        box = metrics.boundingRect(self.info).adjusted(-4, -2, 4, 2)
        box.moveTopLeft(QtCore.QPoint(4, 4))
        self._info_rect = box
        painter.fillRect(box, QtGui.QColor(0, 0, 0, 140))
        painter.setPen(QtGui.QColor(220, 220, 220))
        painter.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignCenter), self.info)
        painter.restore()

    # ----- helpers ---------------------------------------------------------------------
    def _pos(self, ev) -> QtCore.QPointF:
        return ev.position() if hasattr(ev, "position") else QtCore.QPointF(ev.pos())

    def mousePressEvent(self, ev: QtGui.QMouseEvent) -> None:
        self._owner._activate()
        self.setFocus(QtCore.Qt.FocusReason.MouseFocusReason)
        button = ev.button()
        if button == QtCore.Qt.MouseButton.LeftButton:
            self._left_down = True
            self._owner._left_event("press", self._pos(ev))
            ev.accept()
        elif button == QtCore.Qt.MouseButton.RightButton:
            self._right_last = self._pos(ev)
            ev.accept()
        else:
            super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QtGui.QMouseEvent) -> None:
        pos = self._pos(ev)
        self._owner._hover(pos)
        if self._left_down:
            self._owner._left_event("drag", pos)
            ev.accept()
        elif self._right_last is not None:
            d = pos - self._right_last
            self._right_last = pos
            self._owner.window_level_dragged.emit(float(d.x()), float(d.y()))
            ev.accept()
        else:
            super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QtGui.QMouseEvent) -> None:
        button = ev.button()
        if button == QtCore.Qt.MouseButton.LeftButton and self._left_down:
            self._left_down = False
            self._owner._left_event("release", self._pos(ev))
            ev.accept()
        elif button == QtCore.Qt.MouseButton.RightButton:
            self._right_last = None
            ev.accept()
        else:
            super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev: QtGui.QMouseEvent) -> None:
        if ev.button() == QtCore.Qt.MouseButton.MiddleButton:
            super().mouseDoubleClickEvent(ev)
        else:
            ev.accept()

    def contextMenuEvent(self, ev: QtGui.QContextMenuEvent) -> None:
        ev.accept()  # right button is window/level

    def wheelEvent(self, ev: QtGui.QWheelEvent) -> None:
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev)  # ViewBox zooms around the mouse
            return
        self._wheel_accum += ev.angleDelta().y()
        steps = int(self._wheel_accum / 120)
        if steps:
            self._wheel_accum -= steps * 120
            self._owner.step_slice(steps)
        ev.accept()

    def focusInEvent(self, ev: QtGui.QFocusEvent) -> None:
        self._owner._activate()  # keyboard slice navigation acts on the focused view
        super().focusInEvent(ev)

    def leaveEvent(self, ev: QtCore.QEvent) -> None:
        self._owner.hover_left.emit()
        super().leaveEvent(ev)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if hasattr(self._owner, "letter_labels"):
            self._owner._place_labels()
