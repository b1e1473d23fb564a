"""Shared pytest fixtures.

* Qt runs offscreen (``QT_QPA_PLATFORM=offscreen``) and pyqtgraph uses row-major images.
* ``SEGLOOP_HOME`` points at a per-test temp folder (settings, registry, journal).
* Every test FAILS when it leaves a QThread or a superqt worker running (like napari's
  ``dangling_qthreads`` / ``dangling_qthread_pool`` fixtures): wait for your workers, e.g.
  ``controller.workers.wait_idle()`` or ``qtbot.waitUntil(lambda: not manager.is_busy)``.
* ``segloop_app``: the full main window (document, views, panels, controller).
* CPU inference runs in float32 (``SEGLOOP_CPU_BF16=0``) so numeric comparisons mean the same on
  every CPU; the bfloat16 path is tested on its own (tests/test_cpu_bf16.py).
"""

from __future__ import annotations


import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SEGLOOP_CPU_BF16", "0")

import pytest
from PySide6 import QtCore

DATA = Path(__file__).parent / "data"
SHARED_FORMATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
_GRACE_MS = 100  # a worker may still be returning from run() just after its last signal


@pytest.fixture(autouse=True)
def _segloop_home(tmp_path_factory, monkeypatch):
    """Keep every test's settings/registry/journal out of the user's folder."""
    home = tmp_path_factory.mktemp("segloop_home")
    monkeypatch.setenv("SEGLOOP_HOME", str(home))
    return home


def running_threads(pools, threads) -> list[str]:
    """Descriptions of thread pools with active workers and QThreads still running,
    after a short grace period (events are processed meanwhile)."""
    from superqt.utils import WorkerBase

    app = QtCore.QCoreApplication.instance()
    deadline = QtCore.QDeadlineTimer(_GRACE_MS)

    def busy() -> list[str]:
        out = [f"QThreadPool with {p.activeThreadCount()} active thread(s)" for p in pools if p.activeThreadCount()]
        out += [f"QThread {t!r}" for t in threads if _alive(t)]
        out += [f"superqt worker {w!r} not finished" for w in list(WorkerBase._worker_set)]
        return out

    left = busy()
    while left and not deadline.hasExpired():
        if app is not None:
            app.processEvents()
        QtCore.QThread.msleep(5)
        left = busy()
    return left


def _alive(thread) -> bool:
    try:
        return thread.isRunning()
    except RuntimeError:  # C++ object already deleted: not running
        return False


#: Pools / QThreads started during the current test (filled by ``_dangling_qthreads``).
_STARTED: dict = {"pools": [], "threads": [], "reported": False}


@pytest.fixture(autouse=True)
def _dangling_qthreads(monkeypatch):
    """Record every QThreadPool/QThread start so the test can be failed if one is left
    running (checked right after the test body, see ``pytest_runtest_call``)."""
    pools: list[QtCore.QThreadPool] = []
    threads: list[QtCore.QThread] = []
    pool_start = QtCore.QThreadPool.start
    thread_start = QtCore.QThread.start

    def start_pool(self, runnable, priority=0):
        if self not in pools:
            pools.append(self)
        return pool_start(self, runnable, priority)

    def start_thread(self, *args, **kwargs):
        threads.append(self)
        return thread_start(self, *args, **kwargs)

    monkeypatch.setattr(QtCore.QThreadPool, "start", start_pool)
    monkeypatch.setattr(QtCore.QThread, "start", start_thread)
    _STARTED.update(pools=pools, threads=threads, reported=False)
    yield pools, threads
    left = running_threads(pools, threads)  # started by fixture teardown code
    for pool in pools:  # never let a leak poison the next tests
        pool.waitForDone(10_000)
    reported = _STARTED["reported"]
    _STARTED.update(pools=[], threads=[], reported=False)
    if left and not reported:
        pytest.fail("background threads still running after teardown: " + "; ".join(left), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """FAIL the test (not just error its teardown) when its body returns with a QThread or
    worker still running."""
    result = yield
    left = running_threads(_STARTED["pools"], _STARTED["threads"])
    if left:
        _STARTED["reported"] = True
        pytest.fail("test left background threads running (wait for your workers before the "
                    "test ends, e.g. controller.workers.wait_idle()): " + "; ".join(left), pytrace=False)
    return result


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread: tiny shapes gain nothing from more, and on a busy shared
    2-core CPU two spinning OpenMP threads run ~10x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def segloop_app(qtbot):
    """The full main window, shown offscreen; workers are awaited at teardown."""
    from tests.gui_helpers import shown_app

    with shown_app(qtbot, 1200, 800) as parts:
        parts.controller.ask_discard_changes = lambda: True  # never block on a question box
        yield parts
