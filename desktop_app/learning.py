"""Composition of the learning loop: its panels, its controllers and the open project (no
behaviour here; each controller documents its own).

:func:`build_learning` docks the "AI model", "Fine-tune", "Model versions" and "Correction
effort" panels and the toolbar's project switcher, creates one controller per concern
(:mod:`desktop_app.controllers`) with what it needs passed in, wires the few signals that
cross concerns, and opens the first project. Controllers share the Qt-free
:class:`~desktop_app.state.project_session.ProjectSession` (which project, which model),
:class:`~desktop_app.state.prediction.PredictionState` (the last prediction) and the
scan's modality notes (``controller.scan_checks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop_app.controller import Controller
from desktop_app.controllers.context import UiContext
from desktop_app.controllers.dataset import DatasetController
from desktop_app.controllers.first_model import FirstModelController
from desktop_app.controllers.inference import InferenceController
from desktop_app.controllers.modality_guard import ModalityGuard
from desktop_app.controllers.project import ProjectController
from desktop_app.controllers.training import TrainingController
from desktop_app.controllers.versions import VersionsController
from desktop_app.editing import EditingController
from desktop_app.main_window import MainWindow
from desktop_app.settings import Settings
from desktop_app.state.document import Document
from desktop_app.state.prediction import PredictionState
from desktop_app.state.project_session import ProjectSession
from desktop_app.viewer.preview_layer import PreviewLayer
from desktop_app.widgets.effort_chart import EffortChart
from desktop_app.widgets.inference_panel import InferencePanel
from desktop_app.widgets.project_switcher import ProjectSwitcher
from desktop_app.widgets.training_panel import TrainingPanel
from desktop_app.widgets.versions_panel import VersionsPanel
from unet_engine.projects import ProjectStore


@dataclass
class Learning:
    """The learning loop's parts (tests and scripts reach them through :class:`desktop_app.app.App`)."""

    session: ProjectSession
    prediction: PredictionState
    projects: ProjectController
    inference: InferenceController
    dataset: DatasetController
    training: TrainingController
    first_model: FirstModelController
    versions: VersionsController
    guard: ModalityGuard


def build_learning(window: MainWindow, controller: Controller, document: Document, editing: EditingController,
                   settings: Settings, store: ProjectStore | None = None) -> Learning:
    """Dock the learning panels, create their controllers and open the first project."""
    ctx = UiContext(parent=window, workers=controller.workers,
                    show_error=lambda title, error: controller.show_error(title, error),
                    show_message=window.show_message)
    session = ProjectSession(store or ProjectStore())
    prediction = PredictionState()
    inference_panel, training_panel, versions_panel = InferencePanel(), TrainingPanel(), VersionsPanel()
    switcher = ProjectSwitcher()
    window.add_toolbar_widget(switcher)
    guard = ModalityGuard(ctx, session, controller.scan_checks, lambda: document.image, parent=window)
    inference = InferenceController(ctx, document, controller.options, editing.history, session, prediction, guard,
                                    inference_panel, controller.set_default_labels, parent=window)
    for view in editing.grid.views.values():  # the streamed labels of a running model
        view.layers.append(PreviewLayer(view, inference.streaming))
    effort_chart = EffortChart()
    dataset = DatasetController(ctx, document, session, prediction, guard, inference_panel, effort_chart, parent=window)
    training = TrainingController(ctx, session, training_panel, parent=window)
    first_model = FirstModelController(ctx, session, training, training_panel, parent=window)
    versions = VersionsController(ctx, document, controller.options, session, versions_panel, parent=window)
    projects = ProjectController(ctx, session, settings, document, switcher, window.project_menu, window.named_actions,
                                 controller.set_default_labels, window.set_project_title,
                                 controller.unsaved.resolve, controller.discard_mask_changes,
                                 parent=window)
    window.add_panel("AI model", inference_panel, "right")
    window.add_panel("Fine-tune", training_panel, "bottom")
    window.add_panel("Model versions", versions_panel, "bottom", tabify_with="Fine-tune")
    window.add_panel("Correction effort", effort_chart, "bottom", tabify_with="Fine-tune")
    window.docks["Fine-tune"].raise_()

    # the few signals that cross concerns
    controller.scan_opened.connect(inference.on_scan_opened)
    controller.scan_opened.connect(dataset.on_scan_opened)
    controller.model_requested.connect(session.request_model)
    session.project_changed.connect(lambda _p: inference.forget_prediction())
    training.training_finished.connect(lambda res: versions.show_version(res.version))
    projects.open_initial()
    return Learning(session, prediction, projects, inference, dataset, training, first_model, versions, guard)

