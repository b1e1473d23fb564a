"""Fine-tuning from the app, on the open project's dataset and registry ("Fine-tune" panel).

Training runs in a separate, spawned *process* (:mod:`unet_engine.jobs.training_process`): a
training thread in the GUI process stalled the Qt event loop 115-270 ms several times per
run (bench/RESULTS.md, "GUI responsiveness"). A thin worker thread
(:func:`desktop_app.learning_jobs.train_job`) relays the child's StepReport / EpochReport /
TrainResult to the GUI thread, forwards pause, and cancels the child on Cancel, window
close or worker quit (cancel -> join with timeout -> terminate). A child that fails or dies
is shown in the panel as a readable message; the registry keeps its previous versions.

* **Where a fine-tune starts**: :meth:`ProjectSession.fine_tune_start` (the ``--model``
  checkpoint, else the project's active version, else the bundled model the project
  started from). A project with none gets "Train first model" instead
  (:mod:`desktop_app.controllers.first_model` calls :meth:`TrainingController.start_first_model`),
  never the bundled hippocampus model.
* **The first model** of a project is promoted as it lands (it has nothing to be compared
  with), so Run model enables.
* **Honest metrics**: below 2 validation cases the panel says "no validation yet" rather
  than a Dice (:func:`unet_engine.training.validation.validation_text`).
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

from PySide6 import QtCore

from desktop_app import learning_jobs as jobs
from desktop_app.controllers.context import UiContext
from desktop_app.state.project_session import ProjectSession
from desktop_app.state.validation_info import completed_metrics
from desktop_app.widgets.training_panel import TrainingPanel
from unet_engine.progress import CancelToken
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.paths import segloop_home
from unet_engine.projects import FIRST_MODEL_MIN_CASES
from unet_engine.training.config import TrainConfig
from unet_engine.training.state import read_state_json
from unet_engine.training.setup import run_folder
from unet_engine.training.validation import MIN_VALIDATION_CASES, validation_text

log = logging.getLogger(__name__)

#: Fine-tuning defaults in the app (the budget from the panel sets max_steps / max_minutes).
#: ``num_threads=None``: the training process uses all CPUs but one
#: (:func:`unet_engine.jobs.training_process.default_train_threads`), leaving one to the GUI.
APP_TRAIN_CONFIG: dict[str, Any] = dict(num_threads=None, steps_per_epoch=50, val_max_cases=8, checkpoint_every_steps=50)


class TrainingController(QtCore.QObject):
    """Start, pause, resume and cancel training on the open project; feed the panel's curves."""

    training_finished = QtCore.Signal(object)  # TrainResult

    def __init__(self, ctx: UiContext, session: ProjectSession, panel: TrainingPanel,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("training_controller")
        self.ctx, self.session, self.panel = ctx, session, panel
        self.base_config = TrainConfig(**APP_TRAIN_CONFIG)
        self.worker: Any = None
        self.last_train: Any = None
        self._token: CancelToken | None = None
        self._slot: jobs.ProcessSlot | None = None
        self._pause = threading.Event()
        self._promote = False
        self._n_val: int | None = None  # validation cases of the current run
        panel.start_requested.connect(self.start_training)
        panel.pause_toggled.connect(self.set_paused)
        panel.cancel_requested.connect(self.cancel_training)
        panel.resume_saved_requested.connect(self.resume_saved_run)
        for event in (session.project_changed, session.dataset_changed, session.registry_changed,
                      session.model_changed, session.labels_changed):
            event.connect(self._on_session_event)
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown_training)
        self.refresh()

    # ----- panel state ------------------------------------------------------------------------
    def _on_session_event(self, *_args: Any) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Start point, dataset, first-model button and saved run of the open project."""
        s, p = self.session, self.panel
        if s.project is None:
            p.start_label.setText("no project open")
            p.dataset_label.setText("—")
            p.set_first_model(False)
            p.set_saved_run(None)
            p.start_button.setEnabled(False)
            return
        counts = s.case_counts()
        p.dataset_label.setText(f"project {s.name}: {counts.total} case{'s' if counts.total != 1 else ''} "
                                f"({counts.val} for validation)")
        start = s.fine_tune_start()
        if s.needs_first_model():
            need = s.cases_needed(counts)
            p.start_label.setText("no model yet: the first model is planned for this project's data")
            why = (f"Add {need} more corrected case{'s' if need != 1 else ''} first (a first model needs "
                   f"{FIRST_MODEL_MIN_CASES})" if need else "Plan a network for this project's data and train it")
            p.set_first_model(True, ready=need == 0, why=why)
        else:
            p.start_label.setText(f"from: {self._start_text(start)}")
            p.set_first_model(False)
        self.refresh_saved_run()

    def _start_text(self, start: str | None) -> str:
        s = self.session
        if s.requested_model is not None:
            return f"{s.version_of(s.requested_path())} (--model)"
        return {"default": "the bundled model this project started from", None: "—"}.get(start, start or "—")

    @property
    def process(self) -> Any:
        """The running training child process handle (None when no run is going on)."""
        return self._slot.process if self._slot is not None else None

    def training_config(self) -> TrainConfig:
        """The app's fine-tuning settings with the panel's budget: a model of the project's plan
        takes the plan's patch, batch, augmentation and per-case rate; any other model its own
        (the engine's inheritance from its card). A budget in minutes is fitted to a
        complete schedule by the training process (``fit_minutes``)."""
        unit, value = self.panel.budget()
        base = self.base_config.replace(**self.session.fine_tune_settings())  # a planned model: the plan's
        if unit == "minutes":
            return base.replace(max_minutes=float(value))
        return base.replace(max_steps=int(value), steps_per_epoch=min(int(value), base.steps_per_epoch))

    # ----- starting -------------------------------------------------------------------------------
    def start_training(self) -> Any:
        """Fine-tune the project's model in a child process; returns the relaying worker (None if
        not started: no project, no cases, or no model to start from)."""
        s, p = self.session, self.panel
        if self.worker is not None or s.project is None:
            return None
        counts = s.case_counts()
        if counts.total == 0:
            p.set_status("No training set yet: correct a case and press 'Add to training set' first.")
            return None
        start = s.fine_tune_start()
        if start is None:
            p.set_status("This project has no model yet: press 'Train first model'.")
            return None
        unit, value = p.budget()
        return self._launch(self.training_config(), start, resume=False, val_cases=counts.val,
                            fit_minutes=float(value) if unit == "minutes" else None,
                            status=f"Starting a training process from {self._start_text(start)}…")

    def start_first_model(self, config: TrainConfig, plan: dict[str, Any]) -> Any:
        """Train the project's first model from scratch with a plan's config (the plan is saved
        to the project first); the new version becomes the active one."""
        s = self.session
        if self.worker is not None or s.project is None:
            return None
        s.project.save_plan(plan)
        minutes = plan.get("minutes")
        return self._launch(config, "scratch", resume=False, val_cases=s.case_counts().val, promote=True,
                            budget_s=float(minutes) * 60.0 if minutes else None,
                            status=f"Training the first model of project {s.name} (from scratch)…")

    def resume_saved_run(self) -> Any:
        """Continue the project's paused/cancelled run (its saved state) in a child process."""
        if self.worker is not None or self.saved_run() is None:
            return None
        s = self.session
        promote = s.project is not None and s.project.start_version() is None  # a first model's run
        return self._launch(self.training_config(), None, resume=True, val_cases=s.case_counts().val,
                            promote=promote, status="Continuing the saved run…")

    def saved_run(self) -> dict[str, Any] | None:
        """``{"step", "total"}`` of the saved state of a run on this project's dataset (None: none)."""
        s = self.session
        if s.project is None:
            return None
        try:
            info = read_state_json(run_folder(s.registry, SimpleNamespace(folder=s.project.dataset_folder)))
        except SegLoopError:
            return None
        if not info or "step" not in info:
            return None
        try:
            total = TrainConfig.from_dict(info.get("config") or {}).total_steps
        except SegLoopError:
            total = None
        return {"step": int(info["step"]), "total": total}

    def refresh_saved_run(self) -> None:
        run = self.saved_run()
        text = None
        if run is not None:
            of = f" of {run['total']}" if run["total"] else ""
            text = f"Continue the paused or cancelled run from step {run['step']}{of}"
        self.panel.set_saved_run(text)

    def _launch(self, config: TrainConfig, start: str | None, *, resume: bool, status: str, val_cases: int,
                promote: bool = False, budget_s: float | None = None, fit_minutes: float | None = None) -> Any:
        s, p = self.session, self.panel
        project = s.require()
        self._pause.clear()
        self._promote = promote
        token = CancelToken()
        slot = jobs.ProcessSlot()
        self._token, self._slot = token, slot
        p.reset()
        if budget_s is None:
            unit, value = p.budget()
            budget_s = value * 60.0 if unit == "minutes" else None
        p.set_time_budget(budget_s)
        n_val = min(val_cases, config.val_max_cases) if config.val_max_cases else val_cases
        self._n_val = n_val
        p.set_validation_note(validation_text({"val_cases": n_val, "val_mean_dice": None})
                              if n_val < MIN_VALIDATION_CASES else None)
        p.set_running(True)
        p.set_status(status)
        worker = self.ctx.workers.start(
            jobs.train_job, config, project.dataset_folder, project.registry_root, start, self._pause, token,
            segloop_home=segloop_home(), slot=slot, description="Fine-tuning", resume=resume, promote=promote,
            fit_minutes=fit_minutes,
            on_result=lambda res: self.ctx.guard("Could not finish fine-tuning", self._on_trained, res),
            on_error=self._on_error, on_progress=self._on_report, on_finished=self._on_finished)
        jobs.attach_worker(token, worker)
        self.worker = worker
        return worker

    # ----- while it runs ------------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        if paused:
            self._pause.set()
            if self.worker is not None:
                self.panel.set_status("Pausing (the run saves its state)…")
        else:
            self._pause.clear()
            if self.worker is not None:
                self.panel.set_status("Resuming…")

    def cancel_training(self) -> None:
        if self._token is not None and self.worker is not None:
            self._token.cancel()
            self._pause.clear()
            self.panel.set_status("Cancelling (the run saves its state)…")

    def shutdown_training(self, timeout_s: float = 10.0) -> None:
        """Stop a running training process now (app quit): cancel -> join -> terminate."""
        if self._token is not None:
            self._token.cancel()
        if self._slot is not None:
            self._slot.stop(timeout_s)

    def _on_report(self, rep: Any) -> None:
        if hasattr(rep, "loss"):  # StepReport
            self.panel.on_step(rep.step, rep.total_steps, rep.loss, rep.elapsed_s, rep.paused)
        else:  # EpochReport
            self.panel.on_epoch(rep.step, rep.val_loss, rep.val_dice or {})

    def _on_trained(self, res: Any) -> None:
        self.last_train = res
        score = validation_text(completed_metrics(res.metrics, self._n_val))
        if self._promote:
            text = (f"Done ({res.stopped}, {res.steps} steps; {score}): the first model {res.version} is now the "
                    "project's active model. Run model uses it.")
        else:
            text = (f"Done ({res.stopped}, {res.steps} steps; {score}): new version {res.version}. "
                    "Promote it in Model versions to use it.")
        self.panel.set_status(text)
        self.panel.progress.setValue(1000)
        self.session.registry_changed.emit()
        self.ctx.show_message(f"Fine-tuning finished: new model version {res.version}", 10000)
        self.training_finished.emit(res)

    def _on_error(self, exc: BaseException) -> None:
        """Cancelled: say so in the panel; anything else (a child that died included): the
        panel says what happened, in words, and the error dialog shows it too."""
        if isinstance(exc, CancelledError):
            self.panel.set_status(f"Cancelled: {exc}")
            return
        self.panel.set_status(f"Fine-tuning failed: {exc}")
        self.ctx.show_error("Fine-tuning failed", exc)

    def _on_finished(self) -> None:
        slot = self._slot
        if slot is not None and slot.process is not None and slot.process.is_alive():
            slot.stop()  # only when the worker was abandoned mid-yield (quit); normally already exited
        self.panel.flush()
        self.worker = None
        self._token = None
        self._slot = None
        self._pause.clear()
        self.panel.set_running(False)
        self.refresh()

    def is_busy(self) -> bool:
        return self.worker is not None
