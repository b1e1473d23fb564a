"""Fine-tuning in a separate process, so the GUI process's GIL stays free for the event loop.

A training *thread* inside the GUI process stalled the Qt event loop 115-270 ms several
times per run (reading cases, numpy and Python glue between torch calls all hold the GIL;
bench/responsiveness_bench.py). Here :func:`unet_engine.training.fine_tune.fine_tune` runs in a child
started with the ``spawn`` context (never ``fork``: the parent may be a Qt process with
threads) and talks to the parent over a :class:`multiprocessing.Queue` and two
:class:`multiprocessing.Event` objects::

    proc = start_training_process(config, dataset_dir, registry_root, from_version=None)
    while not proc.done:
        for item in proc.poll(timeout=0.1):   # StepReport / EpochReport, as fine_tune yields them
            ...
    proc.result   # TrainResult (None on error);  proc.error: ChildError (None on success)

* Pause / resume / cancel set events the child maps onto ``fine_tune``'s pause Event and
  CancelToken (the child polls them between steps, and every 0.1 s while paused).
* Errors come back as a :class:`ChildError` (type name + message, traceback for the log);
  :meth:`ChildError.to_exception` rebuilds SegLoop errors (``CancelledError`` included) by
  name and wraps anything else in :class:`TrainingProcessError`.
* A child that dies without a result (killed, crash) is reported as a ChildError naming the
  exit code; the registry is untouched then (it writes versions atomically).
* :meth:`TrainingProcess.stop`: cancel -> join with a timeout -> terminate -> kill.
* Nothing here imports Qt; ``SEGLOOP_HOME`` and the registry/dataset paths are passed to the
  child explicitly, and the child sets torch's thread count (default: all CPUs but one) and
  lowers its own CPU priority (``nice``), so the GUI keeps winning a contended CPU.
* If the parent dies, a watcher thread in the child cancels the run (state saved) and the
  child exits instead of being orphaned.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_engine import errors as errors_mod
from unet_engine.errors import SegLoopError
from unet_engine.progress import CancelToken
from unet_engine.training.config import TrainConfig

log = logging.getLogger(__name__)

#: How long :meth:`TrainingProcess.stop` waits after cancelling before it terminates the child.
STOP_TIMEOUT_S = 15.0
#: Scheduling niceness added in the child: when CPUs are contended the GUI process wins them
#: (training only slows down when something else wants the CPU).
DEFAULT_NICE = 10


class TrainingProcessError(SegLoopError):
    """The training process failed with an error that is not a SegLoop error, or died."""


@dataclass
class ChildError:
    """An exception raised in the child, as plain data (exception objects may not pickle)."""

    type_name: str
    message: str
    traceback: str = ""

    def to_exception(self) -> Exception:
        """A SegLoop error of the same class when there is one, else :class:`TrainingProcessError`."""
        cls = getattr(errors_mod, self.type_name, None)
        if isinstance(cls, type) and issubclass(cls, SegLoopError):
            return cls(self.message)
        return TrainingProcessError(f"fine-tuning failed ({self.type_name}): {self.message}")


def default_train_threads() -> int:
    """Torch CPU threads for the child: every CPU this process may use but one (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n - 1)


def _watch_parent(cancel: Any, out: Any) -> None:
    """Child-side thread: if the parent process dies (GUI crash / kill), cancel the run (it saves
    its resumable state) and stop waiting for the unread queue to drain, so the child exits."""
    parent = mp.parent_process()
    if parent is None:
        return
    parent.join()  # returns when the parent's sentinel closes
    log.warning("the parent process is gone: cancelling fine-tuning")
    out.cancel_join_thread()
    cancel.set()


def _child_main(config: dict[str, Any], dataset_dir: str, registry_root: str, from_version: str | None,
                segloop_home: str | None, num_threads: int, nice: int, options: dict[str, Any], pause: Any,
                cancel: Any, out: Any) -> None:
    """Entry point of the child: run fine_tune, send ("report" | "result" | "error", payload)."""
    if nice:
        try:
            os.nice(nice)
        except (AttributeError, OSError):  # not on this platform / not allowed: run at normal priority
            pass
    if segloop_home:
        os.environ["SEGLOOP_HOME"] = segloop_home
    os.environ.setdefault("OMP_NUM_THREADS", str(num_threads))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s [fine-tune process] %(name)s: %(message)s")
    threading.Thread(target=_watch_parent, args=(cancel, out), name="segloop-parent-watch", daemon=True).start()
    try:
        import torch

        torch.set_num_threads(num_threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set (parallel work ran): harmless
            pass
        from unet_engine.data.dataset import RetrainingDataset
        from unet_engine.registry.versions import ModelRegistry
        from unet_engine.training.fine_tune import fine_tune

        cfg = TrainConfig.from_dict(config).replace(num_threads=num_threads)
        out.put(("started", os.getpid()))
        dataset, registry = RetrainingDataset(dataset_dir), ModelRegistry(registry_root)
        fit_minutes = options.pop("fit_minutes", None)
        if fit_minutes and not options.get("resume"):
            from unet_engine.planning import fit_config_to_minutes

            cfg = fit_config_to_minutes(cfg, dataset, float(fit_minutes), registry=registry, from_version=from_version)
        gen = fine_tune(cfg, dataset=dataset, registry=registry, from_version=from_version, pause=pause,
                        cancel=CancelToken(cancel), **options)
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                out.put(("result", stop.value))
                break
            out.put(("report", item))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as data
        out.put(("error", ChildError(type(exc).__name__, str(exc), traceback.format_exc())))
    finally:
        out.close()
        out.join_thread()  # flush the queue before the process exits


class TrainingProcess:
    """The parent's handle on a training child (see the module docstring)."""

    def __init__(self, process: Any, reports: Any, pause_event: Any, cancel_event: Any) -> None:
        self.process = process
        self._queue = reports
        self._pause = pause_event
        self._cancel = cancel_event
        self.result: Any = None
        self.error: ChildError | None = None
        self.child_pid: int | None = None
        self._finished = False

    # ----- control ----------------------------------------------------------------------
    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    def cancel(self) -> None:
        """Ask the run to stop (it saves its resumable state and ends with CancelledError)."""
        self._cancel.set()
        self._pause.clear()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    # ----- state ------------------------------------------------------------------------
    def is_alive(self) -> bool:
        return self.process.is_alive()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    @property
    def done(self) -> bool:
        """True once a result or an error (including the child's death) is known."""
        return self._finished

    # ----- reports ----------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> list[Any]:
        """Reports received since the last call (waits up to ``timeout`` s for the first one).

        Sets :attr:`result` / :attr:`error` when they arrive; a child that exited without
        sending either becomes an ``error`` ("the training process stopped unexpectedly").
        """
        items: list[Any] = []
        block = timeout > 0
        while not self._finished:
            try:
                msg = self._queue.get(block, timeout) if block else self._queue.get_nowait()
            except queue_mod.Empty:
                if not self.process.is_alive():
                    self._drain_after_exit(items)
                break
            except (EOFError, OSError):
                self._drain_after_exit(items)
                break
            block = False
            self._handle(msg, items)
        return items

    def _handle(self, msg: tuple[Any, ...], items: list[Any]) -> None:
        kind = msg[0]
        if kind == "report":
            items.append(msg[1])
        elif kind == "started":
            self.child_pid = int(msg[1])
        elif kind == "result":
            self.result, self._finished = msg[1], True
        elif kind == "error":
            self.error, self._finished = msg[1], True
            if msg[1].type_name != "CancelledError":
                log.error("training process failed:\n%s", msg[1].traceback)

    def _drain_after_exit(self, items: list[Any]) -> None:
        """The child is gone: read what it flushed before exiting, else record its death."""
        self.process.join(1.0)
        while not self._finished:
            try:
                self._handle(self._queue.get(timeout=0.2), items)
            except (queue_mod.Empty, EOFError, OSError):
                break
        if not self._finished:
            self.error = ChildError("TrainingProcessError", _death_message(self.process.exitcode))
            self._finished = True

    # ----- shutdown ---------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait for the child to exit (reading its reports meanwhile); True when it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.process.is_alive():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.poll(timeout=min(0.1, left) if left is not None else 0.1)
            if self._finished:
                self.process.join(left if left is not None else None)
        self.poll()
        return not self.process.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Cancel, wait up to ``timeout`` s, then terminate (and kill). True when it exited cleanly."""
        if self.process.is_alive():
            self.cancel()
        clean = self.join(timeout)
        if not clean:
            log.warning("training process %s did not stop within %.0f s: terminating it", self.pid, timeout)
            self.process.terminate()
            self.process.join(5.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5.0)
        self.close()
        return clean

    def close(self) -> None:
        """Release the queue (call once the child has exited)."""
        if self.process.is_alive():
            return
        self.poll()
        self._queue.close()
        self._queue.join_thread()


def _death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            why = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            why = f"signal {-code}"
    else:
        why = f"exit code {code}"
    return (f"the training process stopped unexpectedly ({why}); no new model version was made and the "
            "existing versions are unchanged")


def start_training_process(config: TrainConfig, dataset_dir: str | Path, registry_root: str | Path,
                           from_version: str | None = None, *, segloop_home: str | Path | None = None,
                           num_threads: int | None = None, nice: int = DEFAULT_NICE, resume: bool = False,
                           state_dir: str | Path | None = None, promote: bool = False,
                           fit_minutes: float | None = None) -> TrainingProcess:
    """Start ``fine_tune(config, ...)`` in a spawned child process and return its handle.

    ``segloop_home`` defaults to this process's ``unet_engine.paths.segloop_home()``;
    ``num_threads`` to ``config.num_threads`` or :func:`default_train_threads`; ``nice``: added
    to the child's scheduling niceness (0: same priority as this process). ``fit_minutes``:
    the child first measures a few steps and fits the schedule to that many minutes
    (:func:`unet_engine.planning.fit_config_to_minutes`), so a time budget ends with a
    decayed learning rate rather than a schedule cut by the clock.
    """
    from unet_engine.paths import segloop_home as _home

    ctx = mp.get_context("spawn")
    pause, cancel, reports = ctx.Event(), ctx.Event(), ctx.Queue()
    threads = int(num_threads or config.num_threads or default_train_threads())
    options: dict[str, Any] = {"resume": resume, "promote": promote, "fit_minutes": fit_minutes}
    if state_dir is not None:
        options["state_dir"] = str(state_dir)
    home = str(segloop_home if segloop_home is not None else _home())
    proc = ctx.Process(target=_child_main, name="segloop-fine-tune", daemon=True,
                       args=(config.to_dict(), str(Path(dataset_dir).resolve()), str(Path(registry_root).resolve()),
                             from_version, home, threads, int(nice), options, pause, cancel, reports))
    proc.start()
    log.info("fine-tuning in process %s (%d torch thread(s))", proc.pid, threads)
    return TrainingProcess(proc, reports, pause, cancel)
