"""One anatomical view of the open document: scan + label overlay + uncertainty + crosshair.

A :class:`SliceView` shows the slice of its plane through the document cursor (the linked
crosshair): scrolling a view moves the cursor along its normal, clicking moves the cursor
in-plane, and the other views follow. It only *shows* the document's arrays; it never
owns or edits the mask (tools do that through :mod:`desktop_app.state`).

Mouse (see :data:`MOUSE_HELP`): wheel = slice, Ctrl+wheel = zoom, middle-drag = pan,
right-drag = window (horizontal) / level (vertical), left = crosshair in ``"navigate"``
mode, or handed to the active tool in any other mode.

Hooks for tools (``desktop_app.viewer.interaction``):

* ``voxel_pressed / voxel_dragged / voxel_released(axis, slice_index, row, col)``:
  emitted for the left button when the mode is not ``"navigate"`` (see
  :meth:`set_left_button_mode`); ``row``/``col`` are continuous array indices of the
  plane's two remaining axes in increasing axis order (:mod:`desktop_app.state.geometry`),
  voxel ``n`` centred on ``n``. ``desktop_app.state.geometry.view_to_kji`` gives (k, j, i).
* ``voxel_hovered(axis, slice_index, row, col)`` on every mouse move, ``hover_left()``.
* :attr:`viewbox` to add preview items (brush outline) in display millimetres;
  :meth:`voxel_to_view_mm` converts a voxel position to them.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.document import Document
from desktop_app.viewer.canvas import SliceCanvas
from desktop_app.state.display import DisplayOptions
from desktop_app.viewer.image_items import DisplayImageItem
from desktop_app.state.intensity import sample_voxels
from desktop_app.viewer.overlay import heat_lut, label_outline, label_rgba, lut_size
from desktop_app.viewer.slice_geometry import PlaneGeometry, plane_geometry
from desktop_app.viewer.view_limits import pan_limits
from unet_engine.volume import Volume, int3
from desktop_app.signals import Connection, connect_all, disconnect_all

log = logging.getLogger(__name__)

NAVIGATE = "navigate"
MOUSE_HELP: tuple[tuple[str, str], ...] = (
    ("Mouse wheel", "Next / previous slice"),
    ("Ctrl + mouse wheel", "Zoom"),
    ("Middle-drag", "Pan"),
    ("Right-drag", "Window (left/right) and level (up/down)"),
    ("Left-click / drag (navigate mode)", "Move the crosshair (the other views follow)"),
    ("Left-drag (a tool selected)", "Use the tool (e.g. paint)"),
)
_LETTER_STYLE = ("color: rgb(255, 220, 80); font-weight: bold; font-size: 13px; "
                 "background: rgba(0, 0, 0, 110); padding: 0px 3px; border-radius: 3px;")


class SliceView(QtWidgets.QFrame):
    """One linked 2D view (axial, coronal or sagittal) of a :class:`Document`."""

    voxel_pressed = QtCore.Signal(int, int, float, float)
    voxel_dragged = QtCore.Signal(int, int, float, float)
    voxel_released = QtCore.Signal(int, int, float, float)
    voxel_hovered = QtCore.Signal(int, int, float, float)
    hover_left = QtCore.Signal()
    window_level_dragged = QtCore.Signal(float, float)  # dx, dy screen pixels
    activated = QtCore.Signal(str)  # plane name, on mouse press / focus

    def __init__(self, document: Document, plane: str, options: DisplayOptions | None = None, parent=None) -> None:
        super().__init__(parent)
        self.document = document
        self.plane = plane
        self.options = options or DisplayOptions()
        self.geometry_: PlaneGeometry | None = None
        self._shown_volume: Volume | None = None  # the Volume geometry_ was computed for
        self.slice_index = 0
        self.left_button_mode = NAVIGATE
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.redraws = {"image": 0, "overlay": 0, "uncertainty": 0}  # for tests / the bench
        self._label_lut = np.zeros((256, 4), np.uint8)
        self._uncertainty_max = 1.0
        self.layers: list = []  # extra per-slice layers (e.g. the tools' preview): .refresh()
        self._build()
        self._connect_document()
        self.options.changed.connect(self._apply_options)
        if document.image is not None:
            self._on_image_changed()

    # ----- construction ----------------------------------------------------------------
    def _build(self) -> None:
        self.setFrameShape(QtWidgets.QFrame.Shape.Box)
        self.setLineWidth(1)
        self.canvas = SliceCanvas(self)
        self.viewbox = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.viewbox.setDefaultPadding(0.01)
        self.canvas.setCentralItem(self.viewbox)
        self.viewbox.sigResized.connect(self._update_limits)
        self.image_item = DisplayImageItem(opaque=True)
        self.uncertainty_item = DisplayImageItem(opaque=False)
        self.uncertainty_item.setLookupTable(heat_lut())
        self.uncertainty_item.setZValue(5)
        self.uncertainty_item.setOpacity(0.75)
        self.overlay_item = DisplayImageItem(opaque=False)
        self.overlay_item.setZValue(10)
        for item in (self.image_item, self.uncertainty_item, self.overlay_item):
            self.viewbox.addItem(item)
        pen = pg.mkPen((80, 200, 255, 170), width=1, style=QtCore.Qt.PenStyle.DashLine)
        self.v_line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.h_line = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for line in (self.v_line, self.h_line):
            line.setZValue(20)
            self.viewbox.addItem(line, ignoreBounds=True)
        self.letter_labels: dict[str, QtWidgets.QLabel] = {}
        for side in ("left", "right", "top", "bottom"):
            lab = QtWidgets.QLabel("", self.canvas)
            lab.setStyleSheet(_LETTER_STYLE)
            lab.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            lab.setObjectName(f"letter_{side}")
            self.letter_labels[side] = lab
        self.canvas.set_info(self.plane.capitalize())
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"slider_{self.plane}")
        self.slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.set_slice)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(1)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.slider)
        self.setObjectName(f"view_{self.plane}")

    def _document_connections(self) -> list[Connection]:
        d = self.document
        return [(d.image_changed, self._on_image_changed), (d.mask_changed, self._on_mask_changed),
                (d.cursor_changed, self._on_cursor_changed), (d.uncertainty_changed, self._on_uncertainty_changed),
                (d.labels.changed, self._on_labels_changed)]

    def _connect_document(self) -> None:
        connect_all(self._document_connections())

    def detach(self) -> None:
        """Stop listening to the document (call before the widget is destroyed)."""
        disconnect_all([*self._document_connections(), (self.options.changed, self._apply_options)])

    # ----- public API ------------------------------------------------------------------
    @property
    def geometry_info(self) -> PlaneGeometry | None:
        """The plane layout for the open scan (None before a scan is open)."""
        return self.geometry_

    def set_left_button_mode(self, mode: str) -> None:
        """``"navigate"``: left click/drag moves the crosshair. Any other name (e.g.
        ``"paint"``): left press/drag/release are emitted as ``voxel_*`` signals only."""
        self.left_button_mode = str(mode)
        cursor = QtCore.Qt.CursorShape.ArrowCursor if mode == NAVIGATE else QtCore.Qt.CursorShape.CrossCursor
        self.canvas.viewport().setCursor(cursor)

    def set_levels(self, low: float, high: float) -> None:
        self.levels = (float(low), float(high))
        if self.image_item.image is not None and not self._is_rgb():
            self.image_item.setLevels(self.levels)

    def set_slice(self, index: int) -> None:
        """Show slice ``index`` by moving the document cursor along this view's normal."""
        g = self.geometry_
        if g is None:
            return
        kji = list(self.document.cursor)
        kji[g.axis] = int(index)
        self.document.set_cursor(int3(kji))

    def step_slice(self, steps: int) -> None:
        self.set_slice(self.slice_index + int(steps))

    def reset_zoom(self) -> None:
        """Fit the slice to the view, and keep it fitted when the view is resized until
        the user zooms or pans (pyqtgraph turns auto-range off on those)."""
        if self.geometry_ is None:
            return
        self._update_limits()
        self.viewbox.enableAutoRange(enable=True)
        self.viewbox.autoRange()

    def _update_limits(self) -> None:
        """Pan/zoom limits for the slice at the view's current shape (see
        :mod:`desktop_app.viewer.view_limits`); re-fits when auto-range is on."""
        g = self.geometry_
        if g is None:
            return
        size = self.viewbox.size()
        self.viewbox.setLimits(**pan_limits(g.extent_mm(), (size.width(), size.height())))
        if any(self.viewbox.autoRangeEnabled()):
            self.viewbox.updateAutoRange()

    def voxel_to_view_mm(self, kji: tuple[float, float, float]) -> tuple[float, float]:
        """Display position (x, y in view mm) of a voxel centre; for tool previews."""
        assert self.geometry_ is not None
        return self.geometry_.crosshair_mm(kji)

    def view_mm_to_display(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        g = self.geometry_
        assert g is not None
        return y_mm / g.row_spacing, x_mm / g.col_spacing

    def widget_to_display(self, pos: QtCore.QPointF) -> tuple[float, float] | None:
        """Canvas widget position -> continuous display pixel (row, col), or None."""
        if self.geometry_ is None:
            return None
        p = self.viewbox.mapSceneToView(self.canvas.mapToScene(pos.toPoint()))
        return self.view_mm_to_display(p.x(), p.y())

    def display_to_widget(self, row: float, col: float) -> QtCore.QPoint:
        """Display pixel (row, col) -> canvas viewport position (for simulated clicks)."""
        g = self.geometry_
        assert g is not None
        scene = self.viewbox.mapViewToScene(QtCore.QPointF(col * g.col_spacing, row * g.row_spacing))
        return self.canvas.mapFromScene(scene)

    # ----- mouse (called by the canvas) ------------------------------------------------
    def _activate(self) -> None:
        self.activated.emit(self.plane)

    def _display_point(self, pos: QtCore.QPointF):
        g = self.geometry_
        disp = self.widget_to_display(pos)
        if g is None or disp is None:
            return None
        return g.tool_point(self.slice_index, disp[0], disp[1]), disp

    def _left_event(self, kind: str, pos: QtCore.QPointF) -> None:
        hit = self._display_point(pos)
        if hit is None:
            return
        (axis, index, row, col), (drow, dcol) = hit
        if self.left_button_mode == NAVIGATE:
            g = self.geometry_
            assert g is not None  # _display_point() found a point
            kji = g.kji(index, drow, dcol)
            self.document.set_cursor(int3(np.floor(v + 0.5) for v in kji))
            return
        signal = {"press": self.voxel_pressed, "drag": self.voxel_dragged, "release": self.voxel_released}[kind]
        signal.emit(axis, index, row, col)

    def _hover(self, pos: QtCore.QPointF) -> None:
        hit = self._display_point(pos)
        if hit is not None:
            axis, index, row, col = hit[0]
            self.voxel_hovered.emit(axis, index, row, col)

    # ----- document events -------------------------------------------------------------
    def _on_image_changed(self) -> None:
        vol = self.document.image
        if vol is None:
            return
        self.geometry_ = g = plane_geometry(vol.shape, vol.spacing, vol.direction, self.plane)
        self._shown_volume = vol
        if self._is_rgb():
            self.levels = (0.0, 255.0)
        self.slice_index = int(self.document.cursor[g.axis])
        self.slider.blockSignals(True)
        self.slider.setRange(0, g.n_slices - 1)
        self.slider.setValue(self.slice_index)
        self.slider.blockSignals(False)
        self.slider.setEnabled(g.n_slices > 1)
        for side, lab in self.letter_labels.items():
            lab.setText(g.letters[side])
            lab.adjustSize()
        self._on_labels_changed(redraw=False)
        self._on_uncertainty_changed(redraw=False)
        # one display pixel = row_spacing x col_spacing mm (physical aspect ratio)
        scale = QtGui.QTransform.fromScale(g.col_spacing, g.row_spacing)
        for item in (self.image_item, self.overlay_item, self.uncertainty_item):
            item.setTransform(scale)
        self._refresh_all()
        self.reset_zoom()
        self._update_crosshair()
        self._update_info()
        self._place_labels()

    def _on_cursor_changed(self, kji) -> None:
        g = self.geometry_
        if g is None or not self._ready():
            return
        index = int(kji[g.axis])
        if index != self.slice_index:
            self.slice_index = index
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
            self._refresh_all()
            self._update_info()
        self._update_crosshair()

    def _on_mask_changed(self, bbox) -> None:
        g = self.geometry_
        if g is not None and self._ready() and g.slice_in_bbox(self.slice_index, bbox):
            self._refresh_overlay()

    def _on_labels_changed(self, redraw: bool = True) -> None:
        labels = self.document.labels
        self._label_lut = np.asarray(labels.lut(size=lut_size(labels.labels.keys())), dtype=np.uint8)
        if redraw:
            self._refresh_overlay()
            for layer in self.layers:
                layer.refresh()

    def _on_uncertainty_changed(self, redraw: bool = True) -> None:
        u = self.document.uncertainty
        if u is not None:
            sample = sample_voxels(u)
            self._uncertainty_max = float(sample.max()) if sample.size and sample.max() > 0 else 1.0
        if redraw:
            self._refresh_uncertainty()

    # ----- drawing -----------------------------------------------------------------------
    def _is_rgb(self) -> bool:
        vol = self.document.image
        return vol is not None and vol.channels in (3, 4)

    def _ready(self) -> bool:
        """False while the document holds a new scan our geometry was not built for yet
        (the document emits label events before ``image_changed``)."""
        return self.geometry_ is not None and self.document.image is self._shown_volume

    def _refresh_all(self) -> None:
        self._refresh_image()
        self._refresh_overlay()
        self._refresh_uncertainty()
        for layer in self.layers:
            layer.refresh()

    @property
    def label_lut(self) -> np.ndarray:
        """The RGBA lookup table of the label colours (row = label value)."""
        return self._label_lut

    def _refresh_image(self) -> None:
        vol, g = self.document.image, self.geometry_
        if vol is None or g is None or not self._ready():
            return
        data = g.extract(vol.array, self.slice_index)
        if self._is_rgb() and data.dtype == np.uint8:
            self.image_item.setImage(data, autoLevels=False, levels=None)
        else:
            self.image_item.setImage(data, autoLevels=False, levels=self.levels)
        self.redraws["image"] += 1

    def _refresh_overlay(self) -> None:
        mask, g = self.document.mask, self.geometry_
        visible = self.options.overlay_visible
        self.overlay_item.setVisible(visible and mask is not None)
        if mask is None or g is None or not visible or not self._ready():
            return
        labels = g.extract(mask, self.slice_index)
        if self.options.outline:
            labels = label_outline(labels)
        self.overlay_item.setImage(label_rgba(labels, self._label_lut), autoLevels=False)
        self.overlay_item.setOpacity(self.options.opacity)
        self.redraws["overlay"] += 1

    def _refresh_uncertainty(self) -> None:
        u, g = self.document.uncertainty, self.geometry_
        show = self.options.uncertainty_visible and u is not None and g is not None and self._ready()
        self.uncertainty_item.setVisible(bool(show))
        if not show or u is None or g is None:
            return
        data = g.extract(u, self.slice_index)
        self.uncertainty_item.setImage(data, autoLevels=False, levels=(0.0, self._uncertainty_max))
        self.redraws["uncertainty"] += 1

    def _update_crosshair(self) -> None:
        g = self.geometry_
        if g is None:
            return
        x, y = g.crosshair_mm(self.document.cursor)
        self.v_line.setValue(x)
        self.h_line.setValue(y)
        show = self.options.crosshair_visible
        self.v_line.setVisible(show)
        self.h_line.setVisible(show)

    @property
    def info_text(self) -> str:
        """The corner caption, e.g. ``"Axial  14/26"``."""
        return self.canvas.info

    def _update_info(self) -> None:
        g = self.geometry_
        if g is not None:
            self.canvas.set_info(f"{self.plane.capitalize()}  {self.slice_index + 1}/{g.n_slices}")

    def _apply_options(self, what: str) -> None:
        if what == "opacity":
            self.overlay_item.setOpacity(self.options.opacity)
        elif what in ("overlay_visible", "outline"):
            self._refresh_overlay()
        elif what == "uncertainty_visible":
            self._refresh_uncertainty()
        elif what == "crosshair_visible":
            self._update_crosshair()

    def set_active(self, active: bool) -> None:
        colour = "rgb(80, 160, 255)" if active else "rgb(60, 60, 60)"
        self.setStyleSheet(f"SliceView {{ border: 1px solid {colour}; }}")

    def _place_labels(self) -> None:
        w, h = self.canvas.width(), self.canvas.height()
        m = 4
        ll = self.letter_labels
        ll["left"].move(m, (h - ll["left"].height()) // 2)
        ll["right"].move(w - ll["right"].width() - m, (h - ll["right"].height()) // 2)
        ll["top"].move((w - ll["top"].width()) // 2, m)
        ll["bottom"].move((w - ll["bottom"].width()) // 2, h - ll["bottom"].height() - m)
