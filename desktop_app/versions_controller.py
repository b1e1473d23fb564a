"""Model versions from the app: the "Model versions" panel's promote / roll back / delete /
compare, each in a worker so the GUI never waits on the registry's lock or on inference.

:class:`VersionsMixin` is part of :class:`desktop_app.learning.LearningController` (kept in
its own module so each stays small). Promote, roll back and delete run
:func:`desktop_app.learning_jobs.registry_job` in a worker (the registry's file lock may be
held by a training process writing its new version); one registry action at a time; the
methods return the worker (None when not started) and the result refreshes the panels.

Expects on ``self``: ``controller``, ``window``, ``document``, ``registry``,
``versions_panel``, ``requested_model``, ``refresh_model()``, ``_guard()``, ``_job_error()``,
``comparison_done`` and ``registry_changed`` (Signals).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtWidgets

from desktop_app import learning_jobs as jobs
from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)


class VersionsMixin:
    """Registry actions and version comparison, off the GUI thread."""

    compare_worker: Any = None
    registry_worker: Any = None
    last_compare: jobs.CompareResult | None = None

    def _init_versions(self) -> None:
        self.compare_worker = None
        self.registry_worker = None
        self.last_compare = None

    def refresh_versions(self) -> None:
        try:
            versions = self.registry.list()
        except SegLoopError as exc:
            self.versions_panel.set_compare_text(f"Could not read the model registry: {exc}")
            return
        names = [lab.name for _v, lab in sorted(self.document.labels.labels.items())]
        self.versions_panel.set_versions(versions, names)

    def _update_versions_busy(self) -> None:
        self.versions_panel.set_busy(self.compare_worker is not None, registry=self.registry_worker is not None)

    def _registry_action(self, title: str, action: str, version: str | None, done_message) -> Any:
        """Run a registry action in a worker; returns the worker (None while another runs)."""
        if self.registry_worker is not None:
            return None

        def on_result(result: str | None) -> None:
            self.requested_model = None  # the registry's active version now drives inference
            self.refresh_versions()
            self.refresh_model()
            self.window.show_message(done_message(result), 6000)
            self.registry_changed.emit(action, result)

        def on_error(exc: BaseException) -> None:
            self.controller.show_error(title, exc)
            self.refresh_versions()

        def finished() -> None:
            self.registry_worker = None
            self._update_versions_busy()

        self.registry_worker = self.controller.workers.start(
            jobs.registry_job, self.registry.root, action, version, description=title.replace("Could not ", "").capitalize(),
            on_result=lambda res: self._guard(title, on_result, res), on_error=on_error, on_finished=finished)
        self._update_versions_busy()
        return self.registry_worker

    def promote(self, version: str):
        """Make ``version`` the active model (in a worker); returns the worker."""
        return self._registry_action("Could not promote", "promote", version,
                                     lambda v: f"{v} is now the active model")

    def rollback(self):
        """Go back to the previously active version (in a worker); returns the worker."""
        return self._registry_action("Could not roll back", "rollback", None,
                                     lambda v: f"Rolled back: {v} is the active model")

    def ask_delete(self, version: str) -> bool:
        """Blocking confirmation (tests replace this method)."""
        answer = QtWidgets.QMessageBox.question(
            self.window, "Delete model version", f"Delete model version {version}? This cannot be undone.",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def delete_version(self, version: str):
        """Delete ``version`` after confirmation (in a worker); returns the worker or None."""
        if not self.ask_delete(version):
            return None
        return self._registry_action("Could not delete", "delete", version, lambda v: f"Deleted model version {v}")

    def compare(self, a: str, b: str):
        """Run versions ``a`` and ``b`` on the open scan; show where they disagree."""
        doc, vp = self.document, self.versions_panel
        if doc.image is None:
            vp.set_compare_text("Open a scan to compare two versions on it.")
            return None
        if self.compare_worker is not None:
            return None
        volume = doc.image
        token = jobs.WorkerCancelToken()
        vp.set_compare_text(f"Running {a} and {b} on the scan…")

        def finished() -> None:
            self.compare_worker = None
            self._update_versions_busy()

        worker = self.controller.workers.start(
            jobs.compare_job, self.registry.root, a, b, volume, cancel=token, description=f"Comparing {a} and {b}",
            on_result=lambda res: self._guard("Could not compare", self._on_compared, res, volume),
            on_error=lambda exc: self._job_error("Could not compare", exc, vp.set_compare_text),
            on_progress=lambda p: vp.set_compare_text(f"Comparing: {p.message} ({100 * p.fraction:.0f} %)"),
            on_finished=finished)
        token.worker = worker
        self.compare_worker = worker
        self._update_versions_busy()
        return worker

    def _on_compared(self, res: jobs.CompareResult, volume) -> None:
        self.last_compare = res
        dice = ", ".join(f"{k} {v:.3f}" for k, v in res.dice.items())
        pct = 100.0 * res.voxels_differ / max(1, res.difference.size)
        self.versions_panel.set_compare_text(
            f"{res.a} vs {res.b}: {res.voxels_differ:,} voxels differ ({pct:.2f} %), shown as the heat overlay. "
            f"Dice between them: {dice}")
        if self.document.image is volume:
            self.document.set_uncertainty(res.difference)
            self.controller.options.set("uncertainty_visible", True)
        self.comparison_done.emit(res)
