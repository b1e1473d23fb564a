"""The three linked views, the 3D surface view, and their layouts: "3-up", "4-up" or one big view.

3-up (the default): the axial view fills the left column, coronal and sagittal are
stacked on the right; the 3D view is hidden (and builds nothing).
4-up: axial and coronal on top, sagittal and the 3D surface view below, all the same size.
One big view: only the chosen plane is shown. The grid keeps track of the *active* view
(last clicked / focused slice view), which keyboard slice navigation acts on.

3-up stays the default: the axial view, where most correcting happens, keeps the large
pane, and the 3D view (OpenGL, meshes rebuilt after each edit) costs nothing until the
user asks for it; the chosen layout is remembered between sessions.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from desktop_app.state.document import Document
from desktop_app.state.geometry import view_to_kji
from desktop_app.state.display import DisplayOptions
from desktop_app.viewer.slice_geometry import PLANES
from desktop_app.viewer.slice_view import NAVIGATE, SliceView
from desktop_app.viewer.surface_view import SurfaceView

LAYOUTS: tuple[str, ...] = ("3-up", "4-up", "axial", "coronal", "sagittal")
#: Layouts showing all three slice views.
MULTI_VIEW_LAYOUTS: tuple[str, ...] = ("3-up", "4-up")


class ViewGrid(QtWidgets.QWidget):
    """Owns the three :class:`SliceView` widgets and the :class:`SurfaceView`, and lays them out."""

    active_view_changed = QtCore.Signal(str)
    layout_changed = QtCore.Signal(str)
    hover_changed = QtCore.Signal(object)  # continuous (k, j, i) or None
    window_level_dragged = QtCore.Signal(float, float)

    def __init__(self, document: Document, options: DisplayOptions | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("view_grid")
        self.document = document
        self.options = options or DisplayOptions()
        self.views: dict[str, SliceView] = {p: SliceView(document, p, self.options) for p in PLANES}
        self.surface_view = SurfaceView(document, self)
        self.surface_view.hide()
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self._layout = ""
        self._active = "axial"
        for view in self.views.values():
            view.activated.connect(self.set_active)
            view.window_level_dragged.connect(self.window_level_dragged)
            view.voxel_hovered.connect(self._on_hover)
            view.hover_left.connect(lambda: self.hover_changed.emit(None))
        self.set_layout("3-up")
        self.set_active("axial")

    # ----- layout ------------------------------------------------------------------------
    @property
    def layout_name(self) -> str:
        return self._layout

    def set_layout(self, name: str) -> None:
        """``"3-up"``, ``"4-up"`` (with the 3D view) or the plane to show alone
        (``"axial"``, ``"coronal"``, ``"sagittal"``)."""
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
        if name == self._layout:
            return
        for view in (*self.views.values(), self.surface_view):
            self._grid.removeWidget(view)
            view.hide()
        for r in range(2):
            self._grid.setRowStretch(r, 0)
        for c in range(2):
            self._grid.setColumnStretch(c, 0)
        if name == "3-up":
            self._grid.addWidget(self.views["axial"], 0, 0, 2, 1)
            self._grid.addWidget(self.views["coronal"], 0, 1)
            self._grid.addWidget(self.views["sagittal"], 1, 1)
            self._grid.setColumnStretch(0, 3)
            self._grid.setColumnStretch(1, 2)
            self._grid.setRowStretch(0, 1)
            self._grid.setRowStretch(1, 1)
            for view in self.views.values():
                view.show()
        elif name == "4-up":
            self._grid.addWidget(self.views["axial"], 0, 0)
            self._grid.addWidget(self.views["coronal"], 0, 1)
            self._grid.addWidget(self.views["sagittal"], 1, 0)
            self._grid.addWidget(self.surface_view, 1, 1)
            for i in range(2):
                self._grid.setColumnStretch(i, 1)
                self._grid.setRowStretch(i, 1)
            for view in (*self.views.values(), self.surface_view):
                view.show()
        else:
            self._grid.addWidget(self.views[name], 0, 0)
            self._grid.setRowStretch(0, 1)
            self._grid.setColumnStretch(0, 1)
            self.views[name].show()
            self.set_active(name)
        self._layout = name
        self.layout_changed.emit(name)

    def visible_planes(self) -> list[str]:
        return list(PLANES) if self._layout in MULTI_VIEW_LAYOUTS else [self._layout]

    # ----- active view -------------------------------------------------------------------
    @property
    def active_plane(self) -> str:
        return self._active

    @property
    def active_view(self) -> SliceView:
        return self.views[self._active]

    def show_plane_alone_if_flat(self) -> None:
        """A one-slice image (photo, single 2D slice): show only the plane that has it."""
        for plane, view in self.views.items():
            g = view.geometry_info
            if g is not None and g.n_slices == 1 and g.n_rows > 1 and g.n_cols > 1:
                self.set_layout(plane)
                return

    def set_active(self, plane: str) -> None:
        changed = plane != self._active
        self._active = plane
        for p, view in self.views.items():
            view.set_active(p == plane)
        if changed:
            self.active_view_changed.emit(plane)

    def cycle_active(self, step: int = 1) -> None:
        """Next/previous view; in one-big-view layout this switches the shown plane."""
        order = list(PLANES)
        nxt = order[(order.index(self._active) + step) % len(order)]
        if self._layout not in MULTI_VIEW_LAYOUTS:
            self.set_layout(nxt)
        self.set_active(nxt)
        self.views[nxt].canvas.setFocus()

    # ----- all views ---------------------------------------------------------------------
    def step_active(self, steps: int) -> None:
        self.active_view.step_slice(steps)

    def set_levels(self, low: float, high: float) -> None:
        for view in self.views.values():
            view.set_levels(low, high)

    def reset_zoom(self) -> None:
        for view in self.views.values():
            view.reset_zoom()
        self.surface_view.reset_camera()

    def set_left_button_mode(self, mode: str = NAVIGATE) -> None:
        """Hand left-drag to a tool (any mode name) or back to the crosshair ("navigate")."""
        for view in self.views.values():
            view.set_left_button_mode(mode)

    def detach(self) -> None:
        for view in self.views.values():
            view.detach()
        self.surface_view.detach()

    def _on_hover(self, axis: int, index: int, row: float, col: float) -> None:
        self.hover_changed.emit(view_to_kji(axis, index, row, col))
