"""A project's first model: plan it for the project's data, show the plan, then train it.

"Train first model" (Fine-tune panel) is offered in a project with no model
(:meth:`ProjectSession.needs_first_model`) and at least ``FIRST_MODEL_MIN_CASES`` cases.

1. The plan is made in a worker (:func:`desktop_app.project_jobs.plan_job`: the dataset's
   fingerprint, nnU-Net-style rules, a few timed training steps) for
   :attr:`FirstModelController.default_minutes`.
2. :class:`~desktop_app.widgets.plan_dialog.PlanDialog` shows it before anything starts:
   each choice and why, the time budget in minutes, and the Advanced fields; "Update plan"
   re-plans in a worker (:func:`desktop_app.project_jobs.replan_job`).
3. Start saves the plan to the project and trains it from scratch in the training child
   process (:meth:`TrainingController.start_first_model`: same curves, pause, cancel and
   resume); the new version becomes the project's active model.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtCore

from desktop_app import project_jobs
from desktop_app.controllers.context import UiContext
from desktop_app.controllers.training import TrainingController
from desktop_app.state.project_session import ProjectSession
from desktop_app.widgets.plan_dialog import PlanDialog
from desktop_app.widgets.training_panel import TrainingPanel
from unet_engine.jobs.training_process import default_train_threads

log = logging.getLogger(__name__)


class FirstModelController(QtCore.QObject):
    """Plan -> plan dialog -> train, for a project that has no model yet."""

    plan_shown = QtCore.Signal(object)  # PlanDialog

    def __init__(self, ctx: UiContext, session: ProjectSession, training: TrainingController, panel: TrainingPanel,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("first_model_controller")
        self.ctx, self.session, self.training, self.panel = ctx, session, training, panel
        self.default_minutes = 10.0
        self.worker: Any = None
        self.dialog: PlanDialog | None = None
        panel.first_model_requested.connect(self.plan_first_model)

    def plan_first_model(self, minutes: float | None = None) -> Any:
        """Plan the open project's first model in a worker, then show the plan; returns the worker."""
        s = self.session
        if self.worker is not None or s.project is None or not s.needs_first_model() or self.training.is_busy():
            return None
        project = s.project
        minutes = float(minutes or self.default_minutes)
        self.panel.set_status(f"Planning the first model of {project.name} (measuring a few training steps)…")
        self.panel.first_model_button.setEnabled(False)
        self.worker = self.ctx.workers.start(
            project_jobs.plan_job, project.folder, minutes, threads=default_train_threads(),
            description="Planning the first model",
            on_result=lambda plan: self.ctx.guard("Could not plan the first model", self._show, plan, project),
            on_error=lambda exc: self.ctx.job_error("Could not plan the first model", exc, self.panel.set_status),
            on_finished=self._on_finished)
        return self.worker

    def _on_finished(self) -> None:
        self.worker = None
        self.training.refresh()

    def _show(self, plan: Any, project: Any) -> None:
        if self.session.project is None or self.session.project.folder != project.folder:
            return  # another project was opened meanwhile
        counts = self.session.case_counts()
        dlg = PlanDialog(project.name, counts.total, counts.val, self.ctx.parent)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.set_plan(plan)
        dlg.changes_requested.connect(lambda changes: self.replan(dlg, changes))
        dlg.start_requested.connect(lambda p: self.start(dlg, p))
        dlg.finished.connect(lambda _r: self._closed(dlg))
        self.dialog = dlg
        self.panel.set_status("The plan is ready: check it and press Start training.")
        dlg.open()
        self.plan_shown.emit(dlg)

    def _closed(self, dlg: PlanDialog) -> None:
        if self.dialog is dlg:
            self.dialog = None
            if self.training.worker is None:
                self.panel.set_status("Idle")

    def replan(self, dlg: PlanDialog, changes: dict[str, Any]) -> Any:
        """Plan again with the dialog's ``changes`` fixed (in a worker); the dialog shows the result."""
        project = self.session.project
        if project is None or self.worker is not None:
            dlg.show_error("Busy: try again in a moment.")
            return None
        self.worker = self.ctx.workers.start(
            project_jobs.replan_job, dlg.plan, changes, project.folder, description="Planning again",
            on_result=lambda plan: dlg.set_plan(plan), on_error=lambda exc: dlg.show_error(str(exc)),
            on_finished=self._on_finished)
        return self.worker

    def start(self, dlg: PlanDialog, plan: Any) -> Any:
        """Save the plan and train it (from scratch, promoted as the first model)."""
        worker = self.training.start_first_model(plan.train_config(), plan.to_dict())
        if worker is None:
            dlg.show_error("Cannot start now: a training run is already going on.")
            return None
        dlg.accept()
        return worker
