"""The unsaved-mask question before an action that would drop the edits (open another scan
or mask, switch project, close the window): **Save**, **Discard** or **Cancel**.

Save runs the app's normal save (``Controller.save_mask``: a worker, or Save As when the mask
has no file yet) and the action runs again once ``mask_saved`` reported the file written and
the save's worker is done; a save that fails (its error dialog shows) or a Save As dialog that
is cancelled stops the action.
The action re-runs through the same check, so edits made while saving are asked about again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6 import QtCore, QtWidgets

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"
#: :meth:`UnsavedMaskGuard.resolve` also answers CLEAN (nothing unsaved) and SAVING (the
#: action waits for the save)
CLEAN, SAVING = "clean", "saving"
QUESTION = "The mask has unsaved changes. Save them first?"


def ask_unsaved_mask(parent: QtWidgets.QWidget | None) -> str:
    """The blocking Save / Discard / Cancel box (Save is the default, Escape cancels)."""
    buttons = QtWidgets.QMessageBox.StandardButton
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, "Unsaved mask", QUESTION,
                                buttons.Save | buttons.Discard | buttons.Cancel, parent)
    box.setObjectName("unsaved_mask_box")
    box.setDefaultButton(buttons.Save)
    box.setEscapeButton(buttons.Cancel)
    box.exec()
    clicked = box.standardButton(box.clickedButton()) if box.clickedButton() is not None else buttons.Cancel
    box.deleteLater()
    return {buttons.Save: SAVE, buttons.Discard: DISCARD}.get(clicked, CANCEL)


def answer_of(reply: Any) -> str:
    """SAVE, DISCARD or CANCEL from the question's reply; ``True`` / ``False`` (what stand-ins
    for the old Discard/Cancel question return) mean Discard / Cancel."""
    if reply is True:
        return DISCARD
    return reply if reply in (SAVE, DISCARD) else CANCEL


@dataclass
class _PendingSave:
    """An action waiting for the save the user asked for."""

    worker: Any
    then: Callable[[], Any]
    volume: Any
    saved: bool = False


class UnsavedMaskGuard(QtCore.QObject):
    """Asks about unsaved edits and, on Save, runs the action once the mask is saved.

    ``ask()`` returns the answer (see :func:`answer_of`); ``save()`` starts the normal save
    and returns its worker (None when nothing was started: Save As cancelled); ``saved`` is
    the signal a written mask emits (``mask_saved(path)``); ``workers`` the
    :class:`~desktop_app.workers.WorkerManager` that runs the save.
    """

    def __init__(self, document: Any, ask: Callable[[], Any], save: Callable[[], Any], saved: Any, workers: Any,
                 show_message: Callable[[str, int], None], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.document, self.ask, self.save, self.show_message = document, ask, save, show_message
        self._pending: _PendingSave | None = None
        saved.connect(self._on_saved)
        workers.worker_finished.connect(self._on_worker_finished)

    def resolve(self, then: Callable[[], Any]) -> str:
        """CLEAN or DISCARD: go on now. CANCEL: don't. SAVING: don't now -- ``then()`` runs
        once the save has written the file and its worker is done (never if it fails)."""
        if not self.document.dirty:
            return CLEAN
        answer = answer_of(self.ask())
        if answer != SAVE:
            return answer
        volume = self.document.image
        worker = self.save()
        if worker is None:  # Save As cancelled: nothing written, nothing done
            self.show_message("Not saved: the mask still has unsaved changes", 6000)
            return CANCEL
        self._pending = _PendingSave(worker, then, volume)
        self.show_message("Saving the mask first…", 0)
        return SAVING

    def _on_saved(self, _path: Any) -> None:
        if self._pending is not None:
            self._pending.saved = True

    def _on_worker_finished(self, worker: Any) -> None:
        pending = self._pending
        if pending is None or worker is not pending.worker:
            return
        self._pending = None
        if not pending.saved:  # the save failed (its error is shown) or the scan changed meanwhile
            self.show_message("The mask was not saved: nothing else was done", 10000)
        elif self.document.image is pending.volume:
            pending.then()  # goes through resolve() again: clean now, or asks about newer edits
