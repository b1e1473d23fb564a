"""Before the model runs on a scan, or the scan joins the training set: does it fit the
project's modality? A scan that contradicts it (a CT in an MR project...) asks
"Run anyway / Cancel" -- never a silent result.

The check itself (:func:`desktop_app.state.scan_checks.modality_notes`) ran in the scan-load
worker; at click time :class:`ModalityGuard` only reads the recorded sentence. A scan shown
without the loader is checked in a worker first. The question is a non-blocking message box
(``objectName`` "modality_warning"); the user's "anyway" holds for that action on that scan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6 import QtCore, QtWidgets

from desktop_app.controllers.context import UiContext
from desktop_app.state.project_session import ProjectSession
from desktop_app.state.scan_checks import CHECKED_MODALITIES, SUBJECT, ScanChecks, modality_notes

_MODALITY_WORDS = {"CT": "CT", "MR": "MR"}


class ModalityGuard(QtCore.QObject):
    """Asks before acting on a scan that contradicts the open project's modality."""

    question_shown = QtCore.Signal(object)  # the QMessageBox

    def __init__(self, ctx: UiContext, session: ProjectSession, checks: ScanChecks, current_image: Callable[[], Any],
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.session, self.checks = ctx, session, checks
        self.current_image = current_image
        self.box: QtWidgets.QMessageBox | None = None
        self._checking: Any = None

    def confirm(self, volume: Any, action: str, proceed: Callable[[], Any], anyway: str = "Run anyway") -> Any:
        """Call ``proceed()`` now when ``volume`` fits the project (returns its result); else ask
        (or check first) and call it later if the user says so (returns None)."""
        project = self.session.project
        modality = project.modality if project is not None else None
        if modality not in CHECKED_MODALITIES or self.checks.accepted(volume, modality, action):
            return proceed()
        if not self.checks.known(volume):
            self._check_then(volume, action, proceed, anyway)
            return None
        text = self.checks.mismatch(volume, modality)
        if text is None:
            return proceed()
        self._ask(volume, modality, action, text, proceed, anyway)
        return None

    def _check_then(self, volume: Any, action: str, proceed: Callable[[], Any], anyway: str) -> None:
        if self._checking is not None:
            return

        def done(notes: dict[str, str | None]) -> None:
            self.checks.record(volume, notes)
            if self.current_image() is volume:
                self.confirm(volume, action, proceed, anyway)

        def finished() -> None:
            self._checking = None

        self._checking = self.ctx.workers.start(
            modality_notes, volume, description="Checking the scan's intensities",
            on_result=lambda notes: self.ctx.guard("Could not check the scan", done, notes),
            on_error=lambda exc: self.ctx.show_error("Could not check the scan", exc), on_finished=finished)

    def _ask(self, volume: Any, modality: str, action: str, text: str, proceed: Callable[[], Any],
             anyway: str) -> None:
        name = self.session.name or "this project"
        box = QtWidgets.QMessageBox(self.ctx.parent)
        box.setObjectName("modality_warning")
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle(f"This scan does not look like {_MODALITY_WORDS[modality]}")
        sentence = text.replace(SUBJECT, f"project {name!r}")
        box.setText(sentence[:1].upper() + sentence[1:] + ".")
        box.setInformativeText(f"{action} on this scan anyway? Its result would likely be wrong.")
        go = box.addButton(anyway, QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        go.setObjectName("modality_anyway_button")
        cancel = box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        cancel.setObjectName("modality_cancel_button")
        box.setDefaultButton(cancel)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(button: QtWidgets.QAbstractButton) -> None:
            self.box = None
            if button is go and self.current_image() is volume:
                self.checks.accept(volume, modality, action)
                self.ctx.guard(f"Could not {action.lower()}", proceed)
            elif button is not go:
                self.ctx.show_message(f"{action}: cancelled (the scan does not look like {modality})", 6000)

        box.buttonClicked.connect(answered)
        self.box = box
        box.open()
        self.question_shown.emit(box)
