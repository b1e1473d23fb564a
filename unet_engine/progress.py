"""Progress reports and cancellation shared by the engine's long-running jobs.

Long work (inference, training, evaluation) is written as a generator that yields
:class:`Progress` and *returns* its result; the GUI drives it from a worker thread, the
CLI from :func:`run_generator` with a progress bar. Cancellation is cooperative: the job
calls :meth:`CancelToken.raise_if_cancelled` between units of work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from unet_engine.errors import CancelledError

T = TypeVar("T")


@dataclass
class Progress:
    """One progress report: ``fraction`` in 0..1, a short message, and ``step`` of ``total``."""

    fraction: float
    message: str = ""
    step: int = 0
    total: int = 0


class CancelToken:
    """A thread- and process-safe "please stop" flag: set by the GUI thread (or the parent
    process), polled by the job. The one cancel token of the code base.

    ``event``: what holds the flag -- a fresh ``threading.Event`` by default, or e.g. a
    ``multiprocessing`` Event the parent process sets. ``also``: another reason to stop,
    polled with the flag (e.g. "the worker running this job was asked to quit")."""

    def __init__(self, event: Any = None, *, also: Callable[[], bool] | None = None) -> None:
        self._event = event if event is not None else threading.Event()
        self.also = also

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self.also is not None and self.also():
            self._event.set()
        return bool(self._event.is_set())

    def raise_if_cancelled(self, what: str = "job") -> None:
        """Raise :class:`unet_engine.errors.CancelledError` when :meth:`cancel` was called."""
        if self.cancelled:
            raise CancelledError(f"{what} cancelled")


def run_generator(gen: Generator[Any, Any, T], on_progress: Callable[[Any], None] | None = None) -> T:
    """Drive ``gen`` to the end, passing each yielded item to ``on_progress``; return its result."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(item)
