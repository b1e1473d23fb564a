"""Add the corrected case to the open project's training set ("Add to training set").

* Only the open project's dataset is written (:func:`desktop_app.learning_jobs.add_case_job`
  gets the project folder; nothing global).
* A scan that contradicts the project's modality asks first (the modality guard).
* A duplicate scan asks to replace its case (:meth:`DatasetController.ask_replace`).
* Label values the project lacks are never remapped: a dialog names them with the names
  and colours of the document's label table and offers "Add label(s) to project" (runs
  :func:`unet_engine.projects.add_labels` in a worker, then adds the case) or Cancel.
* The voxels changed against the prediction and the Dice per label (n/a for a label in
  neither mask) are logged in the project's effort log and shown; the text also says whether
  the project's fine-tunes can be validated yet (2 validation cases).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from desktop_app import learning_jobs as jobs
from desktop_app import project_jobs
from desktop_app.controllers.context import UiContext
from desktop_app.controllers.modality_guard import ModalityGuard
from desktop_app.state.document import Document
from desktop_app.state.effort import EffortLog, EffortRecord, dice_text
from desktop_app.state.labels import default_colour
from desktop_app.state.prediction import PredictionState
from desktop_app.state.project_session import ProjectSession
from desktop_app.widgets.effort_chart import EffortChart
from desktop_app.widgets.inference_panel import InferencePanel
from desktop_app.widgets.unknown_labels_dialog import UnknownLabelsDialog
from unet_engine.training.validation import MIN_VALIDATION_CASES

log = logging.getLogger(__name__)


def add_result_text(res: jobs.AddResult, version: str | None, project: str | None) -> str:
    """The panel's account of an added case (Dice n/a where a label is in neither mask)."""
    text = f"{'Replaced' if res.replaced else 'Added'} case {res.case_id} ({res.split}) to project {project}"
    if res.voxels_changed is not None:
        dice = dice_text(res.dice)
        text += (f"\nVoxels changed vs {version}: {res.voxels_changed:,} "
                 f"({100.0 * res.voxels_changed / max(1, res.voxels_total):.2f} %)"
                 f"\nDice prediction vs correction: {dice}")
    else:
        text += "\n(no model prediction to compare with: edited voxels not recorded)"
    plural = "s" if res.val_cases != 1 else ""
    if res.val_cases < MIN_VALIDATION_CASES:
        text += (f"\nDataset: {res.cases} cases, {res.val_cases} for validation: no validation yet "
                 f"(models are scored from {MIN_VALIDATION_CASES} validation cases)")
    else:
        text += f"\nDataset: {res.cases} cases, {res.val_cases} validation case{plural}"
    return text


class DatasetController(QtCore.QObject):
    """The "Add to training set" button and the correction-effort chart, for the open project."""

    case_added = QtCore.Signal(object)  # AddResult
    labels_added = QtCore.Signal(object)  # Project

    def __init__(self, ctx: UiContext, document: Document, session: ProjectSession, prediction: PredictionState,
                 guard: ModalityGuard, panel: InferencePanel, effort_chart: EffortChart,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataset_controller")
        self.ctx, self.document, self.session, self.prediction = ctx, document, session, prediction
        self.guard, self.panel, self.effort_chart = guard, panel, effort_chart
        self.reviewer: str | None = None
        self.worker: Any = None
        self.labels_worker: Any = None
        self.last_add: jobs.AddResult | None = None
        self.dialog: UnknownLabelsDialog | None = None
        self._retry: dict[str, Any] | None = None
        self.effort: EffortLog | None = self._effort_log()
        panel.add_to_dataset_requested.connect(self.add_to_dataset)
        session.project_changed.connect(self._on_project)
        self.effort_chart.set_log(self.effort)
        self.update_enabled()

    def _effort_log(self) -> EffortLog | None:
        p = self.session.project
        return EffortLog(p.effort_log_path) if p is not None else None

    def _on_project(self, _project: Any) -> None:
        self.effort = self._effort_log()
        self.effort_chart.set_log(self.effort)
        self.panel.add_label.setText("")
        self.update_enabled()

    def on_scan_opened(self, _volume: Any = None) -> None:
        """A new scan: the last case's "Added case ..." account no longer describes what is shown."""
        self.panel.add_label.setText("")
        self.update_enabled()

    def update_enabled(self) -> None:
        busy = self.worker is not None or self.labels_worker is not None
        self.panel.add_button.setEnabled(self.document.has_image and self.session.project is not None and not busy)

    # ----- adding ----------------------------------------------------------------------------
    def add_to_dataset(self, replace: bool = False) -> Any:
        """Add the scan and its corrected mask to the open project's dataset (in a worker);
        returns the worker, or None when not started now (nothing open, or a question pending)."""
        doc = self.document
        if doc.image is None or doc.mask is None or self.worker is not None or self.session.project is None:
            return None
        return self.guard.confirm(doc.image, "Add to training set", lambda: self._start(replace), anyway="Add anyway")

    def _start(self, replace: bool, for_volume: Any = None) -> Any:
        """Start adding the open scan; ``for_volume``: a retry meant for that scan, refused
        (with a note) when another scan has been opened since."""
        doc, project = self.document, self.session.project
        if doc.image is None or doc.mask is None or self.worker is not None or project is None:
            return None
        if for_volume is not None and doc.image is not for_volume:
            self.ctx.show_message("Not added: another scan was opened before the case could be added; "
                                  "open it again and press Add to training set", 10000)
            return None
        pred, version = self.prediction.for_volume(doc.image)
        volume = doc.image
        self.panel.add_label.setText(f"Adding the case to project {project.name}…")
        self.worker = self.ctx.workers.start(
            jobs.add_case_job, project.folder, doc.image, doc.mask.copy(), None if pred is None else pred.copy(),
            version, replace=replace, reviewer=self.reviewer, description="Adding the case to the training set",
            on_result=lambda res: self.ctx.guard("Could not add the case", self._on_added, res, version, volume),
            on_error=lambda exc: self.ctx.job_error("Could not add the case", exc, self.panel.add_label.setText),
            on_finished=self._on_finished)
        self.update_enabled()
        return self.worker

    def _on_finished(self) -> None:
        self.worker = None
        self.update_enabled()
        retry, self._retry = self._retry, None
        if retry is not None:
            self._start(**retry)

    def ask_replace(self, case_id: str) -> bool:
        """Blocking question: replace the duplicate case? (tests replace this method)."""
        return self.ctx.ask_yes_no("Already in the training set",
                                   f"This scan is already in the training set as case {case_id!r}. Replace its mask?")

    def _on_added(self, res: jobs.AddResult, version: str | None, volume: Any = None) -> None:
        """The case was added (or not): the panel says so while that scan is still open."""
        shown = volume is None or self.document.image is volume
        if res.unknown_labels:
            self.ask_unknown_labels(res.unknown_labels, volume)
            return
        if res.duplicate_of is not None:
            if self.ask_replace(res.duplicate_of):
                self._retry = {"replace": True, "for_volume": volume}  # again once this worker has finished
            elif shown:
                self.panel.add_label.setText(f"Not added: already in the training set as {res.duplicate_of}")
            return
        self.last_add = res
        text = add_result_text(res, version, self.session.name)
        if res.voxels_changed is not None and self.effort is not None:
            vol = volume if volume is not None else self.document.image
            case = Path(vol.source_path).name if vol is not None and vol.source_path else str(res.case_id)
            dice = {k: v for k, v in res.dice.items() if v is not None}
            # the project's own dataset, by name: no path
            self.effort.add(EffortRecord(case=case, model_version=version or "?", voxels_changed=res.voxels_changed,
                                         voxels_total=res.voxels_total, dice=dice, dataset=res.dataset.name))
            self.effort_chart.refresh()
        if shown:
            self.panel.add_label.setText(text)
        self.ctx.show_message(text.replace("\n", " · "), 10000)
        self.session.dataset_changed.emit()
        self.case_added.emit(res)

    # ----- labels the project lacks ----------------------------------------------------------------
    def ask_unknown_labels(self, values: list[int], volume: Any = None) -> UnknownLabelsDialog:
        """Open the non-blocking "labels the project does not have" dialog for ``values`` of the
        mask on ``volume`` (default: the open scan); accepting adds them, then that scan's case."""
        volume = volume if volume is not None else self.document.image
        table = self.document.labels
        rows = [(v, table[v].name if v in table else f"Label {v}", table[v].colour if v in table else default_colour(v))
                for v in values]
        names = ", ".join(f"{v} {n!r}" for v, n, _c in rows)
        self.panel.add_label.setText(f"Not added yet: label(s) {names} are not labels of project {self.session.name}")
        dlg = UnknownLabelsDialog(self.session.name or "", rows, self.ctx.parent)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(lambda: self.add_labels_then_case(dlg.labels(), dlg.colours(), volume))
        dlg.rejected.connect(lambda: self.panel.add_label.setText(
            f"Not added: the mask has label(s) {names} that project {self.session.name} does not have"))
        dlg.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dlg
        dlg.open()
        return dlg

    def add_labels_then_case(self, labels: dict[int, str], colours: dict[int, Any], volume: Any = None) -> Any:
        """Add ``labels`` to the project (new schema version, in a worker), then add the case of
        ``volume`` (default: the open scan) if it is still the open scan."""
        project = self.session.project
        volume = volume if volume is not None else self.document.image
        if project is None or self.labels_worker is not None:
            return None
        self.panel.add_label.setText(f"Adding label(s) {', '.join(map(str, labels))} to project {project.name}…")

        def done(new_project: Any) -> None:
            self.session.reload()
            self.labels_added.emit(new_project)
            if self.worker is None:
                self._start(replace=False, for_volume=volume)
            else:
                self._retry = {"replace": False, "for_volume": volume}

        def finished() -> None:
            self.labels_worker = None
            self.update_enabled()

        self.labels_worker = self.ctx.workers.start(
            project_jobs.add_labels_job, project.folder, labels, colours, description="Adding labels to the project",
            on_result=lambda res: self.ctx.guard("Could not add the labels", done, res),
            on_error=lambda exc: self.ctx.job_error("Could not add the labels", exc, self.panel.add_label.setText),
            on_finished=finished)
        self.update_enabled()
        return self.labels_worker

    def is_busy(self) -> bool:
        return self.worker is not None or self.labels_worker is not None
