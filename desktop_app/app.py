"""Start the desktop app: QApplication, pyqtgraph options, main window, controller."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from desktop_app.controller import Controller
from desktop_app.controllers.dataset import DatasetController
from desktop_app.controllers.first_model import FirstModelController
from desktop_app.controllers.inference import InferenceController
from desktop_app.controllers.project import ProjectController
from desktop_app.controllers.training import TrainingController
from desktop_app.controllers.versions import VersionsController
from desktop_app.editing import EditingController
from desktop_app.learning import Learning, build_learning
from desktop_app.main_window import MainWindow
from desktop_app.settings import Settings
from desktop_app.state.document import Document
from desktop_app.state.project_session import ProjectSession
from desktop_app.state.display import DisplayOptions
from desktop_app.viewer.view_grid import LAYOUTS, ViewGrid
from desktop_app.widgets.overlay_panel import OverlayPanel
from desktop_app.widgets.window_level import WindowLevelWidget
from unet_engine.projects import ProjectStore

log = logging.getLogger(__name__)


def configure_pyqtgraph() -> None:
    """Row-major images (``image[row, col]``), as the whole viewer assumes."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


@dataclass
class App:
    """Everything :func:`build_app` creates (tests and panels reach parts through it)."""

    window: MainWindow
    controller: Controller
    document: Document
    grid: ViewGrid
    window_level: WindowLevelWidget
    overlay_panel: OverlayPanel
    options: DisplayOptions
    editing: EditingController
    learning: Learning

    # the learning loop's controllers, by concern (shortcuts into ``learning``)
    @property
    def session(self) -> ProjectSession:
        return self.learning.session

    @property
    def projects(self) -> ProjectController:
        return self.learning.projects

    @property
    def inference(self) -> InferenceController:
        return self.learning.inference

    @property
    def dataset(self) -> DatasetController:
        return self.learning.dataset

    @property
    def training(self) -> TrainingController:
        return self.learning.training

    @property
    def first_model(self) -> FirstModelController:
        return self.learning.first_model

    @property
    def versions(self) -> VersionsController:
        return self.learning.versions


def build_app(settings: Settings | None = None, restore_layout: bool = True, store: ProjectStore | None = None) -> App:
    """Create the document, views, panels, main window and controllers, and open the first
    project (QApplication must exist); ``store``: the projects (default ``SEGLOOP_HOME/projects``)."""
    configure_pyqtgraph()
    settings = settings or Settings()
    document = Document()
    options = DisplayOptions()
    grid = ViewGrid(document, options)
    window_level = WindowLevelWidget()
    overlay_panel = OverlayPanel(document, options)
    window = MainWindow(grid)
    window.add_panel("Window / level", window_level, "right")
    window.add_panel("Labels", overlay_panel, "right", tabify_with="Window / level")
    window.docks["Window / level"].raise_()
    controller = Controller(window, document, grid, window_level, overlay_panel, options, settings)
    editing = EditingController(window, controller, document, grid)  # tools, undo, labels, autosave (owned by window)
    learning = build_learning(window, controller, document, editing, settings, store)  # projects + learning loop
    window.fit_docks()
    if restore_layout:
        geometry, state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            window.restoreGeometry(geometry)
        if state is not None:
            window.restoreState(state)
        layout = settings.view_layout()
        if layout in LAYOUTS:
            grid.set_layout(layout)
    return App(window, controller, document, grid, window_level, overlay_panel, options, editing, learning)


def run_gui(scan: str | Path | None = None, mask: str | Path | None = None, model: str | None = None) -> int:
    """Run the app until the window closes; open ``scan`` (and ``mask``) once it shows."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("SegLoop")
    app.setOrganizationName("SegLoop")
    configure_pyqtgraph()
    parts = build_app()
    parts.window.show()
    parts.controller.request_model(model)
    if scan is not None:
        QtCore.QTimer.singleShot(0, lambda: parts.controller.open_scan(scan, mask=mask))
    elif mask is not None:
        log.warning("--mask given without a scan: ignored")
    code = app.exec()
    parts.controller.shutdown()
    return int(code)
