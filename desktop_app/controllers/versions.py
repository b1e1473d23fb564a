"""Model versions of the open project: the "Model versions" panel's promote / roll back /
delete / compare, each in a worker so the GUI never waits on the registry's lock or on inference.

Promote, roll back and delete run :func:`desktop_app.learning_jobs.registry_job` in a worker
(the registry's file lock may be held by a training process writing its new version); one
registry action at a time; the methods return the worker (None when not started). After
one, the project's active version drives inference (the ``--model`` choice is dropped) and
``session.registry_changed`` lets every panel follow. Compare runs both versions on the open
scan; where they disagree is shown with the uncertainty heat layer, with the Dice between them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from desktop_app import learning_jobs as jobs
from desktop_app.controllers.context import UiContext
from desktop_app.state.effort import dice_text
from desktop_app.state.document import Document
from desktop_app.state.project_session import ProjectSession
from desktop_app.state.validation_info import missing_validation
from desktop_app.state.display import DisplayOptions
from desktop_app.widgets.versions_panel import VersionsPanel
from unet_engine.progress import CancelToken
from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)


class VersionsController(QtCore.QObject):
    """Registry actions and version comparison for the open project, off the GUI thread."""

    comparison_done = QtCore.Signal(object)  # CompareResult
    registry_action_done = QtCore.Signal(str, object)  # action ("promote" / "rollback" / "delete"), version

    def __init__(self, ctx: UiContext, document: Document, options: DisplayOptions, session: ProjectSession,
                 panel: VersionsPanel, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("versions_controller")
        self.ctx, self.document, self.options, self.session, self.panel = ctx, document, options, session, panel
        self.compare_worker: Any = None
        self.registry_worker: Any = None
        self.last_compare: jobs.CompareResult | None = None
        panel.promote_requested.connect(self.promote)
        panel.rollback_requested.connect(self.rollback)
        panel.delete_requested.connect(self.delete_version)
        panel.compare_requested.connect(self.compare)
        panel.refresh_requested.connect(self.refresh_versions)
        for event in (session.project_changed, session.registry_changed, session.labels_changed):
            event.connect(lambda *_a: self.refresh_versions())
        self.refresh_versions()

    @property
    def registry(self) -> Any:
        """The open project's registry (None: no project)."""
        return self.session.registry

    def refresh_versions(self) -> None:
        reg = self.session.registry
        if reg is None:
            self.panel.set_versions([], [])
            self.panel.set_compare_text("No project open.")
            return
        try:
            versions = reg.list()
        except SegLoopError as exc:
            self.panel.set_compare_text(f"Could not read the model registry: {exc}")
            return
        project = self.session.project
        names = [n for _v, n in sorted(project.labels.items())] if project is not None else []
        self.panel.set_versions(versions, names)

    def show_version(self, version: str | None) -> None:
        """Refresh and select ``version`` (a run just made it)."""
        self.refresh_versions()
        if version:
            self.panel.select(version)

    def _update_busy(self) -> None:
        self.panel.set_busy(self.compare_worker is not None, registry=self.registry_worker is not None)

    def _registry_action(self, title: str, action: str, version: str | None,
                         done_message: Callable[[Any], str]) -> Any:
        """Run a registry action in a worker; returns the worker (None while another runs)."""
        reg = self.session.registry
        if self.registry_worker is not None or reg is None:
            return None

        def on_result(result: str | None) -> None:
            self.session.clear_requested_model()  # the project's active version drives inference now
            self.session.registry_changed.emit()
            self.ctx.show_message(done_message(result), 6000)
            self.registry_action_done.emit(action, result)

        def on_error(exc: BaseException) -> None:
            self.ctx.show_error(title, exc)
            self.refresh_versions()

        def finished() -> None:
            self.registry_worker = None
            self._update_busy()

        self.registry_worker = self.ctx.workers.start(
            jobs.registry_job, reg.root, action, version, description=title.replace("Could not ", "").capitalize(),
            on_result=lambda res: self.ctx.guard(title, on_result, res), on_error=on_error, on_finished=finished)
        self._update_busy()
        return self.registry_worker

    def promote(self, version: str) -> Any:
        """Make ``version`` the active model (in a worker); returns the worker (None: not now,
        e.g. the user kept the active model rather than promote a version with no validation Dice)."""
        reg = self.session.registry
        if self.registry_worker is not None or reg is None:
            return None
        try:
            why = missing_validation(reg.get(version))  # one small JSON file
        except SegLoopError as exc:
            self.ctx.show_error("Could not promote", exc)
            return None
        if why is not None and not self.ask_promote_unvalidated(version, why):
            self.ctx.show_message(f"{version} not promoted: it has no validation Dice", 6000)
            return None
        return self._registry_action("Could not promote", "promote", version, lambda v: f"{v} is now the active model")

    def ask_promote_unvalidated(self, version: str, why: str) -> bool:
        """Blocking confirmation before promoting a version with no validation Dice (tests answer
        through ``ctx.ask_yes_no``)."""
        return self.ctx.ask_yes_no("Promote without validation",
                                   f"{version} has no validation Dice ({why}) — promote anyway?")

    def rollback(self) -> Any:
        """Go back to the previously active version (in a worker); returns the worker."""
        return self._registry_action("Could not roll back", "rollback", None,
                                     lambda v: f"Rolled back: {v} is the active model")

    def ask_delete(self, version: str) -> bool:
        """Blocking confirmation (tests replace this method)."""
        return self.ctx.ask_yes_no("Delete model version", f"Delete model version {version}? This cannot be undone.")

    def delete_version(self, version: str) -> Any:
        """Delete ``version`` after confirmation (in a worker); returns the worker or None."""
        if not self.ask_delete(version):
            return None
        return self._registry_action("Could not delete", "delete", version, lambda v: f"Deleted model version {v}")

    def compare(self, a: str, b: str) -> Any:
        """Run versions ``a`` and ``b`` on the open scan; show where they disagree."""
        doc, vp, reg = self.document, self.panel, self.session.registry
        if doc.image is None:
            vp.set_compare_text("Open a scan to compare two versions on it.")
            return None
        if self.compare_worker is not None or reg is None:
            return None
        volume = doc.image
        token = CancelToken()
        vp.set_compare_text(f"Running {a} and {b} on the scan…")

        def finished() -> None:
            self.compare_worker = None
            self._update_busy()

        worker = self.ctx.workers.start(
            jobs.compare_job, reg.root, a, b, volume, cancel=token, description=f"Comparing {a} and {b}",
            on_result=lambda res: self.ctx.guard("Could not compare", self._on_compared, res, volume),
            on_error=lambda exc: self.ctx.job_error("Could not compare", exc, vp.set_compare_text),
            on_progress=lambda p: vp.set_compare_text(f"Comparing: {p.message} ({100 * p.fraction:.0f} %)"),
            on_finished=finished)
        jobs.attach_worker(token, worker)
        self.compare_worker = worker
        self._update_busy()
        return worker

    def _on_compared(self, res: jobs.CompareResult, volume: Any) -> None:
        self.last_compare = res
        dice = dice_text(res.dice)
        pct = 100.0 * res.voxels_differ / max(1, res.difference.size)
        self.panel.set_compare_text(
            f"{res.a} vs {res.b}: {res.voxels_differ:,} voxels differ ({pct:.2f} %), shown as the heat overlay. "
            f"Dice between them: {dice}")
        if self.document.image is volume:
            self.document.set_uncertainty(res.difference)
            self.options.uncertainty_visible = True
        self.comparison_done.emit(res)

    def is_busy(self) -> bool:
        return self.compare_worker is not None or self.registry_worker is not None
