"""The main window: composition only (menus, toolbar, docks, status bar).

Behaviour lives in :mod:`desktop_app.controller`; the window only builds widgets and
exposes them:

* ``named_actions``: every QAction by name (see :mod:`desktop_app.actions`); connect to
  ``named_actions["undo"]`` etc. and add your own with :meth:`MainWindow.add_action`.
* :meth:`add_panel` docks a panel (Tools, Inference, Training, Dataset, Model versions...).
* ``files_dropped(paths, as_mask)``: files dropped on the window (Shift = as mask).
* ``close_guard``: a callable returning False to veto closing (unsaved mask).
* ``mouse_help``: ``(gesture, what it does)`` rows shown in Help > Shortcuts; panels
  with mouse bindings (tools) append theirs.
* The title reads "<scan> — <mask> — <project> — SegLoop": :meth:`set_document_title` and
  :meth:`set_project_title` set its parts. ``project_menu`` (File > Switch project) and
  :meth:`add_toolbar_widget` are filled by the project controller.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.actions import ACTION_SPECS, ActionSpec, make_action
from desktop_app.viewer.slice_view import MOUSE_HELP
from desktop_app.viewer.view_grid import ViewGrid

_MENUS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("&File", ("new_project", "@projects", "delete_project", "-", "open_scan", "open_dicom", "@recent", "-",
               "open_mask", "save_mask", "save_mask_as", "-", "quit")),
    ("&Edit", ("undo", "redo")),
    ("&View", (
        "layout_3up", "layout_4up", "layout_axial", "layout_coronal", "layout_sagittal", "-", "next_view", "prev_view",
        "reset_zoom", "-", "toggle_overlay", "toggle_outline", "opacity_up", "opacity_down",
        "toggle_uncertainty", "toggle_crosshair", "-", "wl_preset_1", "wl_preset_2", "wl_preset_3",
        "wl_preset_4", "wl_auto",
    )),
    ("&Help", ("shortcuts", "about")),
)
_TOOLBAR = ("open_scan", "open_mask", "save_mask", "-", "undo", "redo", "-", "layout_3up", "layout_axial",
            "layout_coronal", "layout_sagittal", "reset_zoom", "-", "toggle_overlay", "toggle_outline",
            "toggle_uncertainty")
_MAX_SIDE_WIDTH = 340  # px: by default side columns and bottom panels leave the views room
_MAX_BOTTOM_HEIGHT = 230
_AREAS = {
    "left": QtCore.Qt.DockWidgetArea.LeftDockWidgetArea,
    "right": QtCore.Qt.DockWidgetArea.RightDockWidgetArea,
    "bottom": QtCore.Qt.DockWidgetArea.BottomDockWidgetArea,
    "top": QtCore.Qt.DockWidgetArea.TopDockWidgetArea,
}


class MainWindow(QtWidgets.QMainWindow):
    """SegLoop's window: the view grid in the centre, panels in docks."""

    files_dropped = QtCore.Signal(list, bool)  # list[Path], as_mask

    def __init__(self, view_grid: ViewGrid, panels: dict[str, tuple[QtWidgets.QWidget, str]] | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("main_window")
        self._title_document: str | None = None
        self._title_project: str | None = None
        self.setWindowTitle("SegLoop")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        # the right column runs the full height (the bottom panels stop at it): its panels'
        # buttons ("Add to training set") stay in view at 1400 x 900
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.view_grid = view_grid
        self.setCentralWidget(view_grid)
        self.close_guard: Callable[[], bool] | None = None
        self.mouse_help: list[tuple[str, str]] = list(MOUSE_HELP)
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        self.panels: dict[str, QtWidgets.QWidget] = {}  # title -> the panel widget itself
        # the app's name -> QAction table (QWidget.actions() stays Qt's list)
        self.named_actions: dict[str, QtGui.QAction] = {}
        for spec in ACTION_SPECS:
            self.add_action(spec)
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        for title, (widget, area) in (panels or {}).items():
            self.add_panel(title, widget, area)
        self.resize(1400, 900)

    # ----- composition -------------------------------------------------------------------
    def add_action(self, spec: ActionSpec | QtGui.QAction, name: str | None = None) -> QtGui.QAction:
        """Register an action (from a spec, or an existing QAction under ``name``).

        "Navigate" actions are attached to the view grid and only fire while a view has
        keyboard focus; all others are window-wide. Registered actions appear in
        Help > Shortcuts.
        """
        if isinstance(spec, ActionSpec):
            action, name, group = make_action(self, spec), spec.name, spec.group
        else:
            action, group = spec, str(spec.property("group") or "")
            if name is None:
                raise ValueError("name is required when registering a QAction")
        if group == "Navigate":
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.view_grid.addAction(action)
        else:
            self.addAction(action)  # shortcuts work even with the menu bar hidden
        self.named_actions[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self.menus: dict[str, QtWidgets.QMenu] = {}
        for title, names in _MENUS:
            menu = bar.addMenu(title)
            self.menus[title.replace("&", "")] = menu
            for name in names:
                if name == "-":
                    menu.addSeparator()
                elif name == "@recent":
                    self.recent_menu = menu.addMenu("Open &recent")
                    self.recent_menu.setObjectName("recent_menu")
                elif name == "@projects":
                    self.project_menu = menu.addMenu("S&witch project")
                    self.project_menu.setObjectName("project_menu")
                else:
                    menu.addAction(self.named_actions[name])
        layouts = QtGui.QActionGroup(self)
        for name in ("layout_3up", "layout_4up", "layout_axial", "layout_coronal", "layout_sagittal"):
            layouts.addAction(self.named_actions[name])

    def _build_toolbar(self) -> None:
        self.toolbar = self.addToolBar("Main")
        self.toolbar.setObjectName("main_toolbar")
        self.toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        for name in _TOOLBAR:
            if name == "-":
                self.toolbar.addSeparator()
            else:
                self.toolbar.addAction(self.named_actions[name])

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.position_label = QtWidgets.QLabel("")
        self.position_label.setObjectName("position_label")
        self.position_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy_label = QtWidgets.QLabel("")
        self.busy_bar = QtWidgets.QProgressBar()
        self.busy_bar.setObjectName("busy_bar")
        self.busy_bar.setRange(0, 0)  # indeterminate
        self.busy_bar.setMaximumWidth(160)
        self.busy_bar.setMaximumHeight(14)
        self.busy_bar.setTextVisible(False)
        status.addPermanentWidget(self.position_label, 1)
        status.addPermanentWidget(self.busy_label)
        status.addPermanentWidget(self.busy_bar)
        self.set_busy(False)

    def add_panel(self, title: str, widget: QtWidgets.QWidget, area: str | QtCore.Qt.DockWidgetArea = "right",
                  tabify_with: str | None = None) -> QtWidgets.QDockWidget:
        """Dock ``widget`` under ``title`` (``area``: "left", "right", "bottom", "top" or a
        Qt.DockWidgetArea); ``tabify_with`` stacks it as a tab with an existing panel.
        The widget sits in a scroll area (``panels[title]`` is the widget itself); its
        show/hide toggle is added to the View menu's Panels submenu."""
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower().replace(' ', '_')}")
        # inside a scroll area: the panels' minimum heights do not add up to a window taller
        # than the screen; a squeezed panel scrolls instead
        scroll = QtWidgets.QScrollArea()
        scroll.setObjectName(f"scroll_{title.lower().replace(' ', '_')}")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(widget)
        dock.setWidget(scroll)
        self.panels[title] = widget
        qt_area = _AREAS[area] if isinstance(area, str) else area
        self.addDockWidget(qt_area, dock)
        if tabify_with is not None and tabify_with in self.docks:
            self.tabifyDockWidget(self.docks[tabify_with], dock)
        self.docks[title] = dock
        if not hasattr(self, "_panels_menu"):
            self._panels_menu = self.menus["View"].addMenu("&Panels")
        self._panels_menu.addAction(dock.toggleViewAction())
        return dock

    def fit_docks(self) -> None:
        """Default dock sizes from the panels' own size hints (call once every panel is
        added): each side column as wide as its widest panel, each dock as tall as its panel
        wants -- scaled down together when they do not all fit (the panels scroll)."""
        tabbed: set[QtWidgets.QDockWidget] = set()
        for dock in self.docks.values():
            if dock not in tabbed:
                tabbed.update(d for d in self.tabifiedDockWidgets(dock))
        for name, area in _AREAS.items():
            docks = [d for d in self.docks.values() if self.dockWidgetArea(d) == area and not d.isFloating()]
            front = [d for d in docks if d not in tabbed or not any(t in docks[: docks.index(d)]
                                                                    for t in self.tabifiedDockWidgets(d))]
            if not front:
                continue
            hints = [self.panels[t].sizeHint() for t, d in self.docks.items() if d in front]
            title_h = self.fontMetrics().height() + 12
            tab_h = self.fontMetrics().height() + 14  # the tab bar under a stack of tabbed docks
            extra = [tab_h if self.tabifiedDockWidgets(d) else 0 for d in front]
            if name in ("left", "right"):
                width = min(max(h.width() for h in hints) + 20, _MAX_SIDE_WIDTH)
                self.resizeDocks(front, [width] * len(front),
                                 QtCore.Qt.Orientation.Horizontal)
                self.resizeDocks(front, [h.height() + title_h + e for h, e in zip(hints, extra)],
                                 QtCore.Qt.Orientation.Vertical)
            else:
                height = min(max(h.height() + e for h, e in zip(hints, extra)) + title_h, _MAX_BOTTOM_HEIGHT)
                self.resizeDocks(front, [height] * len(front),
                                 QtCore.Qt.Orientation.Vertical)

    def add_toolbar_widget(self, widget: QtWidgets.QWidget, front: bool = True) -> None:
        """Put ``widget`` in the main toolbar (first, followed by a separator, when ``front``)."""
        first = self.toolbar.actions()[0] if front and self.toolbar.actions() else None
        if first is None:
            self.toolbar.addWidget(widget)
            return
        self.toolbar.insertWidget(first, widget)
        if not getattr(self, "_toolbar_front_separator", False):
            self.toolbar.insertSeparator(first)
            self._toolbar_front_separator = True

    # ----- title ---------------------------------------------------------------------------
    def set_document_title(self, text: str | None) -> None:
        """The scan part of the title (e.g. "scan.nii.gz — mask.nii.gz *"; None: no scan)."""
        self._title_document = text
        self._update_title()

    def set_project_title(self, name: str | None) -> None:
        """The open project's name in the title (None: no project)."""
        self._title_project = name
        self._update_title()

    def _update_title(self) -> None:
        parts = [p for p in (self._title_document, f"Project: {self._title_project}" if self._title_project else None)
                 if p]
        self.setWindowTitle(" — ".join([*parts, "SegLoop"]))

    # ----- status ------------------------------------------------------------------------
    def set_busy(self, busy: bool, text: str = "") -> None:
        self.busy_bar.setVisible(busy)
        self.busy_label.setVisible(busy)
        self.busy_label.setText(text)

    def set_position_text(self, text: str) -> None:
        self.position_label.setText(text)

    def show_message(self, text: str, timeout_ms: int = 5000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    # ----- events ------------------------------------------------------------------------
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        as_mask = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        self.files_dropped.emit(paths, as_mask)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if self.close_guard is not None and not self.close_guard():
            event.ignore()
            return
        event.accept()
