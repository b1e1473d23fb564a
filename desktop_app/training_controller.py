"""Fine-tuning from the app: the "Fine-tune" panel's start / pause / resume / cancel and curves.

:class:`TrainingMixin` is part of :class:`desktop_app.learning.LearningController` (kept in
its own module so each stays small). The run happens in a separate *process*
(:mod:`unet_engine.train_process`, ``spawn`` context): with a training thread in the GUI
process the GIL stalled the Qt event loop 115-270 ms several times per run
(bench/RESULTS.md, "GUI responsiveness"). A thin worker thread
(:func:`desktop_app.learning_jobs.train_job`) relays the child's StepReport / EpochReport /
TrainResult to the GUI thread, forwards pause, and cancels the child on Cancel, window close
or worker quit (cancel -> join with timeout -> terminate). A child that fails or dies is
shown in the panel as a readable message; the registry keeps its previous versions.

Expects on ``self``: ``controller``, ``window``, ``registry``, ``dataset_folder``,
``base_config``, ``training_panel``, ``versions_panel``, ``requested_model``, ``model_path()``,
``version_of()``, ``refresh_versions()``, ``_guard()``, ``training_finished`` (a Signal).
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

from desktop_app import learning_jobs as jobs
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.paths import segloop_home
from unet_engine.train_config import TrainConfig
from unet_engine.train_state import read_state_json
from unet_engine.training_setup import run_folder

log = logging.getLogger(__name__)


class TrainingMixin:
    """Start, pause, resume and cancel fine-tuning; feed the panel's curves."""

    train_worker: Any = None
    last_train: Any = None
    _train_token: jobs.WorkerCancelToken | None = None
    _train_slot: jobs.ProcessSlot | None = None

    def _init_training(self) -> None:
        self.train_worker = None
        self.last_train = None
        self._train_token = None
        self._train_slot = None
        self._pause = threading.Event()

    def training_config(self) -> TrainConfig:
        """The app's fine-tuning settings with the panel's budget (the batch size is left to the
        engine: 16 slices for 2D models, a 3D model's own batch)."""
        unit, value = self.training_panel.budget()
        if unit == "minutes":
            return self.base_config.replace(max_minutes=float(value))
        return self.base_config.replace(max_steps=int(value), steps_per_epoch=min(int(value),
                                                                                   self.base_config.steps_per_epoch))

    def start_training(self):
        """Start fine-tuning in a child process; returns the relaying worker (None if not started)."""
        tp = self.training_panel
        if self.train_worker is not None:
            return None
        if not (self.dataset_folder / "dataset.json").is_file():
            tp.set_status("No training set yet: correct a case and press 'Add to training set' first.")
            return None
        config = self.training_config()
        path = self.model_path()
        version = self.version_of(path)
        if path is None or self.requested_model is None:
            start = None  # active version, else bundled default, else scratch
        elif path.parent.resolve() == self.registry.versions_dir.resolve():
            start = path.name
        else:
            start = str(path)
        return self._launch(config, start, resume=False,
                            status=f"Starting a training process from {version or 'scratch'}…")

    def resume_saved_run(self):
        """Continue the dataset's paused/cancelled run (its saved state) in a child process."""
        if self.train_worker is not None or self.saved_run() is None:
            return None
        return self._launch(self.training_config(), None, resume=True, status="Continuing the saved run…")

    def saved_run(self) -> dict[str, Any] | None:
        """``{"step", "total"}`` of the saved state of a run on this dataset (None: none)."""
        try:
            info = read_state_json(run_folder(self.registry, SimpleNamespace(folder=self.dataset_folder)))
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
        self.training_panel.set_saved_run(text)

    def _launch(self, config: TrainConfig, start: str | None, *, resume: bool, status: str):
        tp = self.training_panel
        self._pause.clear()
        token = jobs.WorkerCancelToken()
        slot = jobs.ProcessSlot()
        self._train_token, self._train_slot = token, slot
        tp.reset()
        unit, value = tp.budget()
        tp.set_time_budget(value * 60.0 if unit == "minutes" else None)
        tp.set_running(True)
        tp.set_status(status)
        worker = self.controller.workers.start(
            jobs.train_job, config, self.dataset_folder, self.registry.root, start, self._pause, token,
            segloop_home=segloop_home(), slot=slot, description="Fine-tuning", resume=resume,
            on_result=lambda res: self._guard("Could not finish fine-tuning", self._on_trained, res),
            on_error=self._on_train_error,
            on_progress=self._on_train_report, on_finished=self._on_train_finished)
        token.worker = worker
        self.train_worker = worker
        return worker

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._pause.set()
            if self.train_worker is not None:
                self.training_panel.set_status("Pausing (the run saves its state)…")
        else:
            self._pause.clear()
            if self.train_worker is not None:
                self.training_panel.set_status("Resuming…")

    def cancel_training(self) -> None:
        if self._train_token is not None and self.train_worker is not None:
            self._train_token.cancel()
            self._pause.clear()
            self.training_panel.set_status("Cancelling (the run saves its state)…")

    def shutdown_training(self, timeout_s: float = 10.0) -> None:
        """Stop a running training process now (app quit): cancel -> join -> terminate."""
        if self._train_token is not None:
            self._train_token.cancel()
        if self._train_slot is not None:
            self._train_slot.stop(timeout_s)

    def _on_train_report(self, rep) -> None:
        tp = self.training_panel
        if hasattr(rep, "loss"):  # StepReport
            tp.on_step(rep.step, rep.total_steps, rep.loss, rep.elapsed_s, rep.paused)
        else:  # EpochReport
            tp.on_epoch(rep.step, rep.val_loss, rep.val_dice or {})

    def _on_trained(self, res) -> None:
        self.last_train = res
        mean = res.metrics.get("val_mean_dice")
        dice = f", val mean Dice {mean:.3f}" if isinstance(mean, (int, float)) else ""
        self.training_panel.set_status(f"Done ({res.stopped}, {res.steps} steps{dice}): new version {res.version}. "
                                       "Promote it in Model versions to use it.")
        self.training_panel.progress.setValue(1000)
        self.refresh_versions()
        if res.version:
            self.versions_panel.select(res.version)
        self.window.show_message(f"Fine-tuning finished: new model version {res.version}", 10000)
        self.training_finished.emit(res)

    def _on_train_error(self, exc: BaseException) -> None:
        """Cancelled: say so in the panel; anything else (a child that died included): the
        panel says what happened, in words, and the error dialog shows it too."""
        tp = self.training_panel
        if isinstance(exc, CancelledError):
            tp.set_status(f"Cancelled: {exc}")
            return
        tp.set_status(f"Fine-tuning failed: {exc}")
        self.controller.show_error("Fine-tuning failed", exc)

    def _on_train_finished(self) -> None:
        slot = self._train_slot
        if slot is not None and slot.process is not None and slot.process.is_alive():
            slot.stop()  # only when the worker was abandoned mid-yield (quit); normally already exited
        self.training_panel.flush()
        self.train_worker = None
        self._train_token = None
        self._train_slot = None
        self._pause.clear()
        self.training_panel.set_running(False)
        self.refresh_saved_run()
