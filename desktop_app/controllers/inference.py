"""Run the open project's model on the open scan and review its uncertainty (the "AI model" panel).

* **Which model**: :meth:`ProjectSession.model_path` (``--model`` until a version is
  promoted, else the project's active version, else the bundled model it started from).
  A project with no model says what to do, with the count: "No model yet: add N more
  corrected cases, then Train first model"; Run model is disabled then.
* **Run**: a scan that contradicts the project's modality asks first
  (:class:`~desktop_app.controllers.modality_guard.ModalityGuard`). The model loads and runs
  in a worker (:func:`desktop_app.learning_jobs.inference_job`; cached per checkpoint), with
  a progress bar and Cancel. The result is ONE undoable "AI prediction" step; the mask as
  predicted is recorded in the shared :class:`~desktop_app.state.prediction.PredictionState`
  (the dataset controller counts the corrections against it); the uncertainty goes to
  ``document.set_uncertainty``.
* **View first**: the run is focused on the cursor and the axis of the slice under review
  (:meth:`InferenceController.review_axis`): the engine labels that slice first and streams
  the rest; the final parts are shown as they arrive in ``streaming`` (a
  :class:`~desktop_app.state.preview.Preview` drawn in every slice view,
  :mod:`desktop_app.controllers.inference_stream`), the panel says how long the rest will
  take and when the slice in view was ready. The preview goes when the run ends (the
  prediction replaces it) or is cancelled (the mask is unchanged).
* **Review**: :mod:`desktop_app.state.review` (jumping marks the previous jump's slice
  reviewed); the review axis is the axial view's array axis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from desktop_app import learning_jobs as jobs
from desktop_app.controllers.context import UiContext
from desktop_app.controllers.inference_stream import StreamDisplay
from desktop_app.controllers.modality_guard import ModalityGuard
from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.labels import Label, as_rgb
from desktop_app.state.prediction import PredictionState
from desktop_app.state.project_session import ProjectSession
from desktop_app.state.review import ReviewState
from desktop_app.state.display import DisplayOptions
from desktop_app.viewer.slice_geometry import world_axis_assignment
from desktop_app.widgets.inference_panel import InferencePanel
from unet_engine.progress import CancelToken
from unet_engine.model.checkpoint import WEIGHTS_NAME, load_card
from unet_engine.errors import SegLoopError
from unet_engine.inference.streaming import PartialProgress
from unet_engine.volume import int3

log = logging.getLogger(__name__)

STREAM_REDRAW_MS = 40  # streamed labels are drawn at most this often


def no_model_text(session: ProjectSession) -> str:
    """What the panel says when the open project has no model to run."""
    if session.project is None:
        return "No project open: create one with File > New project…"
    if session.requested_model is not None:
        return f"No model: --model {session.requested_model} is not a readable checkpoint folder."
    need = session.cases_needed()
    if need > 0:
        return (f"No model yet: add {need} more corrected case{'s' if need != 1 else ''}, "
                "then Train first model (Fine-tune panel).")
    return "No model yet: press Train first model in the Fine-tune panel."


def network_kind(spec: Any) -> str:
    """The network as the plan dialog names it: 2D, 2.5D (neighbour slices as input channels) or 3D."""
    return "2.5D" if spec.dims == 2 and getattr(spec, "context_slices", 0) else f"{spec.dims}D"


class InferenceController(QtCore.QObject):
    """The "AI model" panel's run / cancel / review, for the open project's model."""

    prediction_applied = QtCore.Signal(object)  # InferenceResult

    def __init__(self, ctx: UiContext, document: Document, options: DisplayOptions, history: History,
                 session: ProjectSession, prediction: PredictionState, guard: ModalityGuard, panel: InferencePanel,
                 apply_labels: Callable[[list[Label]], None], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inference_controller")
        self.ctx, self.document, self.options, self.history = ctx, document, options, history
        self.session, self.prediction, self.guard, self.panel = session, prediction, guard, panel
        self.apply_labels = apply_labels
        self.review = ReviewState.empty()
        self.worker: Any = None
        self._token: CancelToken | None = None
        self._predicted = False  # the running job's prediction was applied
        self._run_volume: Any = None  # the scan the running job segments
        self._cache: dict[tuple[str, float], tuple[Any, Any]] = {}
        self.stream = StreamDisplay()
        self.streaming = self.stream.preview  # the streamed labels, drawn by every slice view
        self._redraw = QtCore.QTimer(self)  # streamed parts arriving together redraw once
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(STREAM_REDRAW_MS)
        self._redraw.timeout.connect(self.stream.flush)
        self._connect()
        self.refresh_model()

    # ----- wiring ------------------------------------------------------------------------
    def _connect(self) -> None:
        p, s = self.panel, self.session
        p.run_requested.connect(self.run_inference)
        p.cancel_requested.connect(self.cancel_inference)
        p.uncertainty_toggled.connect(lambda on: setattr(self.options, "uncertainty_visible", on))
        p.next_uncertain_requested.connect(self.next_uncertain_slice)
        p.mark_reviewed_requested.connect(self.mark_slice_reviewed)
        self.options.changed.connect(self._on_option)
        for event in (s.project_changed, s.labels_changed, s.dataset_changed, s.registry_changed, s.model_changed):
            event.connect(self._on_session_event)

    def _on_session_event(self, *_args: Any) -> None:
        self.refresh_model()

    def _on_option(self, name: str) -> None:
        if name == "uncertainty_visible":
            self.panel.set_uncertainty_checked(bool(self.options.uncertainty_visible))

    def update_enabled(self) -> None:
        has = self.document.has_image
        self.panel.set_running(self.worker is not None, can_run=has and self.session.model_path() is not None)
        self.panel.set_review_enabled(has and self.review.n_uncertain > 0)

    def on_scan_opened(self, _volume: Any = None) -> None:
        """A new scan: no prediction, no review, nothing running on the old one."""
        self.cancel_inference()
        self.stream.clear()
        self.prediction.clear()
        self.review = ReviewState.empty()
        self.panel.set_review(self.review.summary(), False)
        self.panel.reset_progress()
        self.panel.set_status("")
        self.update_enabled()

    def forget_prediction(self) -> None:
        """Another project is open: the last prediction was made by another project's model."""
        self.prediction.clear()
        self.review = ReviewState.empty()
        self.panel.set_review(self.review.summary(), False)
        self.panel.set_status("")

    # ----- which model ---------------------------------------------------------------------
    def set_requested_model(self, model: str | None) -> None:
        """Use ``model`` (a checkpoint path; "default": the project's model) for inference."""
        self.session.request_model(model)

    def model_path(self) -> Path | None:
        return self.session.model_path()

    def refresh_model(self) -> None:
        p, s = self.panel, self.session
        path = s.model_path()
        if path is None:
            p.set_model_text(no_model_text(s), ok=False)
        else:
            try:
                card = load_card(path)
                labels = ", ".join(v for k, v in sorted(card.labels.items()) if int(k) != 0)
                where = {"active version": "active version", "--model": "--model",
                         "bundled start": "bundled start model"}.get(s.model_source(), "")
                p.set_model_text(f"Project {s.name}: {s.version_of(path)} ({where}) · {network_kind(card.spec)} · "
                                 f"labels: {labels}")
            except SegLoopError as exc:
                p.set_model_text(f"Model unreadable: {exc}", ok=False)
        if p.device_label.text() == "Device: —":
            p.set_device(_quick_device())
        self.update_enabled()

    def review_axis(self) -> int:
        vol = self.document.image
        if vol is None:
            return 0
        try:
            return int(world_axis_assignment(vol.direction)[2])
        except Exception:  # noqa: BLE001 - odd geometry: the first array axis
            return 0

    # ----- inference -----------------------------------------------------------------------
    def run_inference(self, scope: str | None = None) -> Any:
        """Run the model on the open scan in a worker; returns the worker (None when not started
        now: nothing to run, or the modality question is pending)."""
        doc = self.document
        if doc.image is None or self.worker is not None:
            return None
        if self.session.model_path() is None:
            self.refresh_model()
            self.ctx.show_message("No model to run (see the AI model panel)", 6000)
            return None
        scope = scope or self.panel.scope
        return self.guard.confirm(doc.image, "Run the model", lambda: self._start(scope), anyway="Run anyway")

    def _start(self, scope: str) -> Any:
        doc, p = self.document, self.panel
        path = self.session.model_path()
        if doc.image is None or self.worker is not None or path is None:
            return None
        axis = self.review_axis()
        region = None
        if scope == "slice":
            region = tuple(slice(doc.cursor[a], doc.cursor[a] + 1) if a == axis else slice(None) for a in range(3))
        elif scope == "box":
            h = p.box_spin.value()
            region = tuple(slice(max(0, c - h), min(n, c + h)) for c, n in zip(doc.cursor, doc.image.shape))
        weights = Path(path) / WEIGHTS_NAME
        key = (str(path), weights.stat().st_mtime if weights.exists() else 0.0)
        token = CancelToken()
        volume = doc.image
        version = self.session.version_of(path)
        self._token = token
        self._predicted, self._run_volume = False, volume
        p.set_running(True)
        self.stream.start(volume, doc.cursor, axis)
        p.set_progress(0.0, "starting")
        p.set_status(f"Running {version}…")
        worker = self.ctx.workers.start(
            jobs.inference_job, Path(path), self._cache.get(key), volume, tta=p.tta_check.isChecked(),
            region=region, review_axis=axis, focus=tuple(doc.cursor), focus_axis=axis, cancel=token,
            description="Running the model",
            on_result=lambda res: self.ctx.guard("Could not apply the prediction", self._on_prediction, res, volume,
                                                 key, version),
            on_error=lambda exc: self.ctx.job_error("Inference failed", exc, p.set_status),
            on_progress=lambda pr: self.ctx.guard("Could not show the progress", self._on_progress, pr, volume),
            on_finished=self._on_finished)
        jobs.attach_worker(token, worker)
        self.worker = worker
        return worker

    def _on_progress(self, pr: Any, volume: Any) -> None:
        """Progress bar, time estimate, and any finished part of the labels."""
        p = self.panel
        p.set_progress(pr.fraction, pr.message)
        live = self._token is not None and not self._token.cancelled and self.document.image is volume
        if live and isinstance(pr, PartialProgress) and pr.partial is not None:
            self.stream.add(pr.partial)
            if not self._redraw.isActive():
                self._redraw.start()
        estimate = self.stream.estimate(pr.fraction, pr.step, pr.total)
        p.set_estimate(" · ".join(t for t in (estimate, self.stream.ready_text()) if t))

    def cancel_inference(self) -> None:
        if self._token is not None and self.worker is not None:
            self._token.cancel()
            self.worker.quit()
            self._redraw.stop()
            self.stream.clear()  # the streamed labels go at once; the mask never had them
            self.panel.set_status("Cancelling…")

    def _on_finished(self) -> None:
        """The run ended: a run stopped by Cancel says so while its scan is open (the worker may
        stop at a progress report without an error); anything but a prediction empties the bar."""
        token, volume = self._token, self._run_volume
        self.worker = None
        self._token = self._run_volume = None
        self._redraw.stop()
        self.stream.clear()
        if not self._predicted:
            if token is not None and token.cancelled and self.document.image is volume:
                self.panel.set_status("Cancelled: the model run was stopped; the mask is unchanged.")
            self.panel.reset_progress()
        self.update_enabled()

    def _on_prediction(self, res: jobs.InferenceResult, volume: Any, key: tuple[str, float], version: str | None) -> None:
        self._cache = {key: (res.model, res.card)}  # one model in memory
        doc = self.document
        if doc.image is not volume or doc.mask is None:
            return  # another scan was opened meanwhile
        self._apply_card_labels(res.card)
        self._redraw.stop()
        self.stream.clear()  # the prediction replaces the streamed preview
        if res.labels is not None:
            new = res.labels if res.labels.dtype == doc.mask.dtype else res.labels.astype(doc.mask.dtype)
        else:
            new = doc.mask.copy()
            new[res.region] = res.region_labels
        self.history.apply_full_mask(new, "AI prediction")
        self.prediction.record(new, volume, version)
        doc.set_uncertainty(res.uncertainty)
        self.review = res.review
        p = self.panel
        p.set_device(res.how)
        p.set_progress(1.0, "done")
        p.set_estimate("")  # the status line below says how long it took
        p.set_review(self.review.summary(), self.review.n_uncertain > 0)
        where = "" if res.region is None else " (region)"
        # both times from the click (model loading included), so they compare
        wall = time.perf_counter() - self.stream.started if self.stream.started else res.seconds
        focus = self.stream.focus_seconds
        ready = f" (slice in view after {focus:.1f} s)" if focus is not None and focus < wall - 0.05 else ""
        p.set_status(f"Predicted{where} in {wall:.1f} s{ready} with {version} on {res.device}. Ctrl+Z undoes it.")
        self._predicted = True
        self.prediction_applied.emit(res)

    def _apply_card_labels(self, card: Any) -> None:
        """The project's labels name the prediction; a label only the model knows (a --model
        checkpoint) is added with the card's name and colour."""
        table = self.document.labels
        project = self.session.project
        wanted = {int(k): str(v) for k, v in card.labels.items() if int(k) != 0}
        colours = {k: as_rgb(tuple(int(c) for c in card.colour(k))[:3]) for k in wanted}
        if project is not None:
            for k, v in project.labels.items():
                wanted[k], colours[k] = v, project.colours[k]
        if all(k in table and table[k].name == v for k, v in wanted.items()):
            return
        self.apply_labels([Label(k, v, colours[k]) for k, v in sorted(wanted.items())])

    # ----- review --------------------------------------------------------------------------
    def next_uncertain_slice(self) -> int | None:
        """Jump the cursor to the most uncertain unreviewed slice (marks the previous jump reviewed)."""
        idx = self.review.next_uncertain_slice()
        if idx is None:
            self.ctx.show_message("All uncertain slices reviewed", 4000)
        else:
            cur = list(self.document.cursor)
            cur[self.review.axis] = idx
            self.document.set_cursor(int3(cur))
            self.ctx.show_message(f"Uncertain slice {idx} (max uncertainty {self.review.slice_max[idx]:.2f})", 4000)
        self.panel.set_review(self.review.summary(), self.review.n_uncertain > 0)
        return idx

    def mark_slice_reviewed(self) -> None:
        self.review.mark_reviewed(self.document.cursor[self.review.axis])
        self.panel.set_review(self.review.summary(), self.review.n_uncertain > 0)

    def is_busy(self) -> bool:
        return self.worker is not None


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

