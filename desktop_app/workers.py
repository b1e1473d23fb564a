"""Background jobs: superqt workers with tracked lifetimes.

Everything slow (reading a scan, writing a mask, inference, training) runs through
:meth:`WorkerManager.start`, never on the GUI thread::

    manager.start(read_volume, path, description="Opening scan",
                  on_result=lambda vol: ..., on_error=lambda exc: ...)

* A plain function runs in a :class:`superqt.utils.FunctionWorker`; a *generator* function
  (the engine's ``predict_volume`` / ``fine_tune`` style) runs in a ``GeneratorWorker``:
  each ``yield`` reaches ``on_progress`` on the GUI thread and :meth:`WorkerManager.cancel`
  (``worker.quit()``) stops it at the next yield.
* Callbacks run on the GUI thread (queued signals). Pass the worker *copies* of document
  arrays: only the GUI thread changes the document.
* ``busy_changed(bool)`` / ``message_changed(str)`` drive the status-bar busy indicator;
  ``worker_finished(worker)`` follows each worker's own callbacks (it is no longer busy).
* :meth:`WorkerManager.shutdown` (window close, test teardown) asks every worker to quit
  and waits for the thread pool.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore
from superqt.utils import WorkerBase, create_worker

log = logging.getLogger(__name__)


class WorkerManager(QtCore.QObject):
    """Starts workers, keeps them alive until finished, reports busy state."""

    busy_changed = QtCore.Signal(bool)
    message_changed = QtCore.Signal(str)
    worker_finished = QtCore.Signal(object)  # the worker, after its result / error callbacks

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._workers: dict[WorkerBase, str] = {}

    # ----- starting ------------------------------------------------------------------------
    def start(
        self,
        func: Callable[..., Any],
        *args: Any,
        description: str = "Working",
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> WorkerBase:
        """Run ``func(*args, **kwargs)`` in a worker thread and return the worker.

        ``on_error`` gets the exception (default: logged). Errors never propagate to the
        event loop, so a failing job cannot take the app down.
        """
        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        if on_result is not None:
            worker.returned.connect(on_result)
        worker.errored.connect(on_error if on_error is not None else self._log_error)
        if on_progress is not None and inspect.isgeneratorfunction(func):
            worker.yielded.connect(on_progress)
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        if on_finished is not None:
            worker.finished.connect(on_finished)
        was_busy = self.is_busy
        self._workers[worker] = description
        worker.start()
        if not was_busy:
            self.busy_changed.emit(True)
        self.message_changed.emit(description)
        return worker

    # ----- state ---------------------------------------------------------------------------
    @property
    def is_busy(self) -> bool:
        return bool(self._workers)

    @property
    def active(self) -> list[WorkerBase]:
        return list(self._workers)

    def descriptions(self) -> list[str]:
        return list(self._workers.values())

    def cancel(self, worker: WorkerBase) -> None:
        """Ask a worker to stop (generator workers stop at their next yield)."""
        worker.quit()

    def wait_idle(self, timeout_ms: int = 10_000) -> bool:
        """Process events until every worker has finished (tests, shutdown). True if idle."""
        deadline = QtCore.QDeadlineTimer(timeout_ms)
        app = QtCore.QCoreApplication.instance()
        while self._workers and not deadline.hasExpired():
            if app is not None:
                app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            QtCore.QThread.msleep(2)
        return not self._workers

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Ask all workers to quit and wait for them; True when all stopped in time."""
        for worker in list(self._workers):
            worker.quit()
        ok = QtCore.QThreadPool.globalInstance().waitForDone(timeout_ms)
        # deliver the queued finished signals so our bookkeeping is clean
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.processEvents()
        if not ok:
            log.warning("workers still running after %d ms: %s", timeout_ms, self.descriptions())
        return ok

    # ----- internals -----------------------------------------------------------------------
    def _on_finished(self, worker: WorkerBase) -> None:
        description = self._workers.pop(worker, None)
        if description is not None:
            log.debug("worker finished: %s", description)
        if not self._workers:
            self.busy_changed.emit(False)
            self.message_changed.emit("")
        else:
            self.message_changed.emit(next(reversed(self._workers.values())))
        self.worker_finished.emit(worker)

    @staticmethod
    def _log_error(exc: BaseException) -> None:
        log.error("background job failed", exc_info=(type(exc), exc, exc.__traceback__))
