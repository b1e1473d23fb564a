"""The learning loop in the app: run the model, review its uncertainty, add the corrected
case to the training set, fine-tune, and manage model versions -- all off the GUI thread.

:class:`LearningController` composes four panels (:mod:`desktop_app.widgets.inference_panel`,
``training_panel``, ``versions_panel``, ``effort_chart``) and owns the learning workers
(jobs in :mod:`desktop_app.learning_jobs`) and their lifetimes; the app creates one with
``LearningController(window, controller, document, editing)``.

* **Which model**: the ``--model`` argument when given (until the user promotes or rolls
  back a version in the versions panel), else the registry's active version, else the
  bundled default (``resources/models/default``); with none, the panel says "No model".
  Loading happens in the inference worker; the loaded model is cached per checkpoint.
* **Inference**: progress bar + Cancel (a :class:`~desktop_app.learning_jobs.WorkerCancelToken`,
  also fired by window close); the result is ONE undoable "AI prediction" step
  (``History.apply_full_mask``); label names/colours come from the model card; the
  uncertainty goes to ``document.set_uncertainty``. The mask as predicted is kept
  (``prediction``) to measure the correction effort and to mark edited voxels.
* **Review**: see :mod:`desktop_app.state.review` (jumping marks the previous jump's
  slice reviewed). The review axis is the axial view's array axis.
* **Add to training set**: the scan, corrected mask, edited-voxel mask and model version go
  to ``segloop_home()/datasets/default`` (created with the card's labels); a duplicate
  scan asks to replace; the voxels changed and Dice per label are logged
  (:mod:`desktop_app.state.effort`) and shown.
* **Fine-tune** (:mod:`desktop_app.training_controller`): ``fine_tune`` runs in a separate
  *process* (spawned; torch uses all CPUs but one), relayed by a thin worker thread;
  pause/resume/cancel; live curves; the new version shows in the versions panel.
* **Versions** (:mod:`desktop_app.versions_controller`): promote / roll back / delete in a
  worker; compare runs both versions on the open scan in a worker; where they disagree is
  shown with the uncertainty heat layer (it replaces the uncertainty map until the next
  prediction), with the Dice between them per label.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from desktop_app import learning_jobs as jobs
from desktop_app.state.effort import EffortLog, EffortRecord
from desktop_app.state.labels import Label
from desktop_app.state.review import ReviewState
from desktop_app.training_controller import TrainingMixin
from desktop_app.versions_controller import VersionsMixin
from desktop_app.viewer.slice_geometry import world_axis_assignment
from desktop_app.widgets.effort_chart import EffortChart
from desktop_app.widgets.inference_panel import InferencePanel
from desktop_app.widgets.training_panel import TrainingPanel
from desktop_app.widgets.versions_panel import VersionsPanel
from unet_engine.checkpoint import WEIGHTS_NAME, load_card
from unet_engine.errors import CancelledError, CheckpointError, SegLoopError
from unet_engine.model_resolver import resolve_model_path
from unet_engine.paths import segloop_home
from unet_engine.registry import ModelRegistry
from unet_engine.train_config import TrainConfig

log = logging.getLogger(__name__)

#: Fine-tuning defaults in the app (the budget from the panel sets max_steps / max_minutes).
#: ``num_threads=None``: the training process uses all CPUs but one
#: (:func:`unet_engine.train_process.default_train_threads`), leaving one to the GUI.
APP_TRAIN_CONFIG = dict(num_threads=None, steps_per_epoch=50, val_max_cases=8, checkpoint_every_steps=50)


def default_dataset_folder() -> Path:
    return segloop_home() / "datasets" / "default"


class LearningController(TrainingMixin, VersionsMixin, QtCore.QObject):
    """Inference, review, dataset, fine-tuning and versions, wired to the window."""

    prediction_applied = QtCore.Signal(object)  # InferenceResult
    case_added = QtCore.Signal(object)  # AddResult
    training_finished = QtCore.Signal(object)  # TrainResult
    comparison_done = QtCore.Signal(object)  # CompareResult
    registry_changed = QtCore.Signal(str, object)  # action ("promote" / "rollback" / "delete"), version

    def __init__(self, window, controller, document, editing, registry: ModelRegistry | None = None) -> None:
        super().__init__(window)
        self.setObjectName("learning_controller")
        self.window, self.controller, self.document, self.editing = window, controller, document, editing
        self.registry = registry or ModelRegistry()
        self.effort = EffortLog()
        self.dataset_folder = default_dataset_folder()
        self.base_config = TrainConfig(**APP_TRAIN_CONFIG)
        self.requested_model: str | None = getattr(controller, "requested_model", None)
        self.reviewer: str | None = None
        self._cache: dict[tuple[str, float], tuple[Any, Any]] = {}
        self.prediction: np.ndarray | None = None  # the mask right after the last AI prediction
        self.prediction_version: str | None = None
        self._prediction_volume = None
        self.review = ReviewState.empty()
        self.last_add: jobs.AddResult | None = None
        self._retry_replace = False
        self.infer_worker = self.add_worker = None
        self._infer_token: jobs.WorkerCancelToken | None = None
        self._init_training()
        self._init_versions()

        self.inference_panel = InferencePanel()
        self.training_panel = TrainingPanel()
        self.versions_panel = VersionsPanel()
        self.effort_chart = EffortChart(self.effort)
        window.add_panel("AI model", self.inference_panel, "right")
        window.add_panel("Fine-tune", self.training_panel, "bottom")
        window.add_panel("Model versions", self.versions_panel, "bottom", tabify_with="Fine-tune")
        window.add_panel("Correction effort", self.effort_chart, "bottom", tabify_with="Fine-tune")
        window.docks["Fine-tune"].raise_()
        self._connect()
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown_training)
        self.refresh_model()
        self.refresh_versions()
        self.refresh_saved_run()
        self._update_enabled()

    # ----- wiring ------------------------------------------------------------------------
    def _connect(self) -> None:
        ip, tp, vp, c = self.inference_panel, self.training_panel, self.versions_panel, self.controller
        ip.run_requested.connect(self.run_inference)
        ip.cancel_requested.connect(self.cancel_inference)
        ip.uncertainty_toggled.connect(lambda on: c.options.set("uncertainty_visible", on))
        ip.next_uncertain_requested.connect(self.next_uncertain_slice)
        ip.mark_reviewed_requested.connect(self.mark_slice_reviewed)
        ip.add_to_dataset_requested.connect(self.add_to_dataset)
        c.options.changed.connect(self._on_option)
        tp.start_requested.connect(self.start_training)
        tp.pause_toggled.connect(self.set_paused)
        tp.cancel_requested.connect(self.cancel_training)
        tp.resume_saved_requested.connect(self.resume_saved_run)
        vp.promote_requested.connect(self.promote)
        vp.rollback_requested.connect(self.rollback)
        vp.delete_requested.connect(self.delete_version)
        vp.compare_requested.connect(self.compare)
        vp.refresh_requested.connect(self.refresh_versions)
        c.scan_opened.connect(self._on_scan_opened)
        if hasattr(c, "model_requested"):
            c.model_requested.connect(self.set_requested_model)

    def _on_option(self, name: str) -> None:
        if name == "uncertainty_visible":
            self.inference_panel.set_uncertainty_checked(bool(self.controller.options.uncertainty_visible))

    def _update_enabled(self) -> None:
        has = self.document.has_image
        running = self.infer_worker is not None
        self.inference_panel.set_running(running, can_run=has and self.model_path() is not None)
        self.inference_panel.add_button.setEnabled(has and self.add_worker is None)
        self.inference_panel.set_review_enabled(has and self.review.n_uncertain > 0)

    def _on_scan_opened(self, _volume) -> None:
        self.cancel_inference()
        self.prediction = None
        self._prediction_volume = None
        self.review = ReviewState.empty()
        self.inference_panel.set_review(self.review.summary(), False)
        self.inference_panel.set_progress(0.0)
        self.inference_panel.set_status("")
        self._update_enabled()

    # ----- which model ---------------------------------------------------------------------
    def set_requested_model(self, model: str | None) -> None:
        """Use ``model`` (a path, or "default") instead of the registry's active version."""
        self.requested_model = model or None
        self.refresh_model()

    def model_path(self) -> Path | None:
        """The checkpoint folder inference uses now (None: no model)."""
        try:
            return resolve_model_path(self.requested_model)
        except CheckpointError:
            return None

    def version_of(self, path: Path | None) -> str | None:
        """Registry version id of a checkpoint folder, "bundled-default", or the folder name."""
        if path is None:
            return None
        p = Path(path).resolve()
        if p.parent == self.registry.versions_dir.resolve():
            return p.name
        if "models" in p.parts and p.name == "default":
            return "bundled-default"
        return p.name

    def refresh_model(self) -> None:
        ip = self.inference_panel
        path = self.model_path()
        if path is None:
            ip.set_model_text("No model: the registry has no active version and the bundled default model "
                              "(resources/models/default) is missing. Start with --model PATH.", ok=False)
        else:
            try:
                card = load_card(path)
                labels = ", ".join(v for k, v in sorted(card.labels.items()) if int(k) != 0)
                where = "--model" if self.requested_model else ("active version" if self.registry.active else "bundled")
                ip.set_model_text(f"Model: {self.version_of(path)} ({where}) · {card.spec.dims}D · labels: {labels}")
            except SegLoopError as exc:
                ip.set_model_text(f"Model unreadable: {exc}", ok=False)
        if ip.device_label.text() == "Device: —":
            ip.set_device(_quick_device())
        self.training_panel.start_label.setText(f"from: {self.version_of(path) or 'scratch'}")
        self.training_panel.dataset_label.setText(str(self.dataset_folder))
        self._update_enabled()

    def review_axis(self) -> int:
        vol = self.document.image
        if vol is None:
            return 0
        try:
            return int(world_axis_assignment(vol.direction)[2])
        except Exception:  # noqa: BLE001 - odd geometry: the first array axis
            return 0

    # ----- inference -----------------------------------------------------------------------
    def run_inference(self, scope: str | None = None):
        """Run the model on the open scan in a worker; returns the worker (None if not started)."""
        doc, ip = self.document, self.inference_panel
        if doc.image is None or self.infer_worker is not None:
            return None
        path = self.model_path()
        if path is None:
            self.refresh_model()
            self.window.show_message("No model to run (see the AI model panel)", 6000)
            return None
        scope = scope or ip.scope
        axis = self.review_axis()
        region = None
        if scope == "slice":
            region = tuple(slice(doc.cursor[a], doc.cursor[a] + 1) if a == axis else slice(None) for a in range(3))
        elif scope == "box":
            h = ip.box_spin.value()
            region = tuple(slice(max(0, c - h), min(n, c + h)) for c, n in zip(doc.cursor, doc.image.shape))
        weights = Path(path) / WEIGHTS_NAME
        key = (str(path), weights.stat().st_mtime if weights.exists() else 0.0)
        token = jobs.WorkerCancelToken()
        volume = doc.image
        self._infer_token = token
        ip.set_running(True)
        ip.set_progress(0.0, "starting")
        ip.set_status(f"Running {self.version_of(path)}…")
        worker = self.controller.workers.start(
            jobs.inference_job, Path(path), self._cache.get(key), volume, tta=ip.tta_check.isChecked(),
            region=region, review_axis=axis, cancel=token, description="Running the model",
            on_result=lambda res: self._guard("Could not apply the prediction", self._on_prediction, res, volume, key),
            on_error=lambda exc: self._job_error("Inference failed", exc, ip.set_status),
            on_progress=lambda p: ip.set_progress(p.fraction, p.message),
            on_finished=self._on_inference_finished)
        token.worker = worker
        self.infer_worker = worker
        return worker

    def cancel_inference(self) -> None:
        if self._infer_token is not None and self.infer_worker is not None:
            self._infer_token.cancel()
            self.infer_worker.quit()

    def _on_inference_finished(self) -> None:
        self.infer_worker = None
        self._infer_token = None
        self._update_enabled()

    def _on_prediction(self, res: jobs.InferenceResult, volume, key) -> None:
        self._cache = {key: (res.model, res.card)}  # one model in memory
        doc = self.document
        if doc.image is not volume or doc.mask is None:
            return  # another scan was opened meanwhile
        self._apply_card_labels(res.card)
        if res.labels is not None:
            new = res.labels if res.labels.dtype == doc.mask.dtype else res.labels.astype(doc.mask.dtype)
        else:
            new = doc.mask.copy()
            new[res.region] = res.region_labels
        self.editing.history.apply_full_mask(new, "AI prediction")
        self.prediction, self._prediction_volume = new, volume
        self.prediction_version = self.version_of(res.path)
        doc.set_uncertainty(res.uncertainty)
        self.review = res.review
        self.inference_panel.set_device(res.device)
        self.inference_panel.set_progress(1.0, "done")
        self.inference_panel.set_review(self.review.summary(), self.review.n_uncertain > 0)
        where = "" if res.region is None else " (region)"
        self.inference_panel.set_status(f"Predicted{where} in {res.seconds:.1f} s with {self.prediction_version} "
                                        f"on {res.device}. Ctrl+Z undoes it.")
        self.prediction_applied.emit(res)

    def _apply_card_labels(self, card) -> None:
        table = self.document.labels
        wanted = {int(k): str(v) for k, v in card.labels.items() if int(k) != 0}
        if all(k in table and table[k].name == v for k, v in wanted.items()):
            return
        labels = [Label(k, v, tuple(int(c) for c in card.colour(k))[:3]) for k, v in sorted(wanted.items())]
        self.controller.set_default_labels(labels)

    # ----- review --------------------------------------------------------------------------
    def next_uncertain_slice(self) -> int | None:
        """Jump the cursor to the most uncertain unreviewed slice (marks the previous jump reviewed)."""
        idx = self.review.next_uncertain_slice()
        if idx is None:
            self.window.show_message("All uncertain slices reviewed", 4000)
        else:
            cur = list(self.document.cursor)
            cur[self.review.axis] = idx
            self.document.set_cursor(tuple(cur))
            self.window.show_message(f"Uncertain slice {idx} (max uncertainty "
                                     f"{self.review.slice_max[idx]:.2f})", 4000)
        self.inference_panel.set_review(self.review.summary(), self.review.n_uncertain > 0)
        return idx

    def mark_slice_reviewed(self) -> None:
        self.review.mark_reviewed(self.document.cursor[self.review.axis])
        self.inference_panel.set_review(self.review.summary(), self.review.n_uncertain > 0)

    # ----- add to training set ---------------------------------------------------------------
    def add_to_dataset(self, replace: bool = False):
        doc = self.document
        if doc.image is None or doc.mask is None or self.add_worker is not None:
            return None
        pred = self.prediction if self._prediction_volume is doc.image else None
        labels = {v: lab.name for v, lab in doc.labels.labels.items()}
        if not labels:
            labels = {1: "foreground"}
        version = self.prediction_version if pred is not None else None
        self.inference_panel.add_label.setText("Adding the case…")
        self.add_worker = self.controller.workers.start(
            jobs.add_case_job, self.dataset_folder, labels, doc.image, doc.mask.copy(),
            None if pred is None else pred.copy(), version, replace=replace, reviewer=self.reviewer,
            description="Adding the case to the training set",
            on_result=lambda res: self._guard("Could not add the case", self._on_added, res, version),
            on_error=lambda exc: self._job_error("Could not add the case", exc, self.inference_panel.add_label.setText),
            on_finished=self._on_add_finished)
        self._update_enabled()
        return self.add_worker

    def _on_add_finished(self) -> None:
        self.add_worker = None
        self._update_enabled()
        if self._retry_replace:
            self._retry_replace = False
            self.add_to_dataset(replace=True)

    def ask_replace(self, case_id: str) -> bool:
        """Blocking question: replace the duplicate case? (tests replace this method)."""
        answer = QtWidgets.QMessageBox.question(
            self.window, "Already in the training set",
            f"This scan is already in the training set as case {case_id!r}. Replace its mask?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def _on_added(self, res: jobs.AddResult, version: str | None) -> None:
        if res.duplicate_of is not None:
            if self.ask_replace(res.duplicate_of):
                self._retry_replace = True  # started again once this worker has finished
            else:
                self.inference_panel.add_label.setText(f"Not added: already in the training set as {res.duplicate_of}")
            return
        self.last_add = res
        text = f"{'Replaced' if res.replaced else 'Added'} case {res.case_id} ({res.split})"
        if res.voxels_changed is not None:
            dice = ", ".join(f"{k} {v:.3f}" for k, v in res.dice.items())
            text += (f"\nVoxels changed vs {version}: {res.voxels_changed:,} "
                     f"({100.0 * res.voxels_changed / max(1, res.voxels_total):.2f} %)\nDice prediction vs correction: {dice}")
            vol = self.document.image
            case = Path(vol.source_path).name if vol is not None and vol.source_path else str(res.case_id)
            self.effort.add(EffortRecord(case=case, model_version=version or "?", voxels_changed=res.voxels_changed,
                                         voxels_total=res.voxels_total, dice=res.dice, dataset=str(res.dataset)))
            self.effort_chart.refresh()
        else:
            text += "\n(no model prediction to compare with: edited voxels not recorded)"
        self.inference_panel.add_label.setText(text)
        self.window.show_message(text.replace("\n", " · "), 10000)
        self.case_added.emit(res)

    # ----- helpers -------------------------------------------------------------------------
    def _guard(self, title: str, func, *args) -> None:
        try:
            func(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.controller.show_error(title, exc)

    def _job_error(self, title: str, exc: BaseException, show_status) -> None:
        if isinstance(exc, CancelledError):
            show_status(f"Cancelled: {exc}")
            return
        show_status(f"{title}.")
        self.controller.show_error(title, exc)

    def is_busy(self) -> bool:
        return any(w is not None for w in (self.infer_worker, self.add_worker, self.train_worker,
                                           self.compare_worker, self.registry_worker))


def _quick_device() -> str:
    """The device inference will use, without initialising CUDA on the GUI thread."""
    try:
        import torch

        if torch.cuda.is_available():
            return "GPU (CUDA; name shown after the first run)"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "Apple GPU (mps)"
    except Exception:  # noqa: BLE001 - cosmetic
        pass
    return "CPU"


def learning_controller(window: QtWidgets.QWidget) -> LearningController | None:
    """The :class:`LearningController` attached to ``window`` (None when there is none)."""
    return window.findChild(LearningController, "learning_controller")
