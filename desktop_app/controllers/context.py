"""What every controller needs from the window: a dialog parent, the workers, messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6 import QtWidgets

from desktop_app.workers import WorkerManager
from unet_engine.errors import CancelledError


@dataclass
class UiContext:
    """``parent``: dialogs' parent; ``workers``: runs jobs off the GUI thread;
    ``show_error(title, error)``: a readable, non-blocking error dialog;
    ``show_message(text, ms)``: the status bar."""

    parent: QtWidgets.QWidget
    workers: WorkerManager
    show_error: Callable[[str, BaseException | str], None]
    show_message: Callable[[str, int], None]

    def guard(self, title: str, func: Callable[..., Any], *args: Any) -> None:
        """Call a result handler on the GUI thread; a failure becomes an error dialog, not a crash."""
        try:
            func(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_error(title, exc)

    def job_error(self, title: str, exc: BaseException, show_status: Callable[[str], None]) -> None:
        """A worker failed: "Cancelled: ..." in the panel, or the panel says so and a dialog explains."""
        if isinstance(exc, CancelledError):
            show_status(f"Cancelled: {exc}")
            return
        show_status(f"{title}.")
        self.show_error(title, exc)

    def ask_yes_no(self, title: str, text: str) -> bool:
        """A blocking Yes/No question (No is the default)."""
        buttons = QtWidgets.QMessageBox.StandardButton
        answer = QtWidgets.QMessageBox.question(self.parent, title, text, buttons.Yes | buttons.No, buttons.No)
        return answer == buttons.Yes

    def busy_jobs(self) -> list[str]:
        """What runs in the background now (descriptions), e.g. ["Fine-tuning"]."""
        return self.workers.descriptions()
