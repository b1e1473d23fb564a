"""Workers: results, progress, cancel, errors, and the dangling-thread guard itself."""

from __future__ import annotations

import threading
import time

from conftest import running_threads
from desktop_app.workers import WorkerManager
from unet_engine.errors import UnsupportedImageError


def _slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def _count(n: int):
    for i in range(n):
        time.sleep(0.01)
        yield i
    return n


def _forever():
    """A generator that only a cancel ends."""
    i = 0
    while True:
        time.sleep(0.01)
        yield i
        i += 1


def _blocked(release: threading.Event) -> str:
    assert release.wait(30), "never released"
    return "released"


def _boom(path: str) -> None:
    raise UnsupportedImageError("is not an image", path)


def test_function_generator_cancel_and_errors(qtbot):
    manager = WorkerManager()
    busy: list[bool] = []
    manager.busy_changed.connect(busy.append)
    results, progress, errors = [], [], []
    manager.start(_slow, 0.01, description="short", on_result=results.append)
    manager.start(_count, 5, description="count", on_progress=progress.append, on_result=results.append)
    manager.start(_boom, "/x/scan.nii.gz", description="boom", on_error=errors.append)
    assert manager.is_busy and set(manager.descriptions()) == {"short", "count", "boom"}
    assert manager.wait_idle(10_000)
    assert sorted(map(str, results)) == ["5", "done"] and progress == [0, 1, 2, 3, 4]
    assert len(errors) == 1 and str(errors[0]) == "/x/scan.nii.gz: is not an image"
    assert busy == [True, False]
    progress.clear()
    ended: list[str] = []
    worker = manager.start(_forever, description="long", on_progress=progress.append,
                           on_result=lambda r: ended.append("result"), on_error=lambda e: ended.append("error"))
    qtbot.waitUntil(lambda: len(progress) > 6, timeout=5000)
    manager.cancel(worker)
    assert manager.wait_idle(5000)  # only the cancel can end it
    assert progress == list(range(len(progress))) and ended == []  # stopped between yields: no result, no error
    assert not manager.is_busy and manager.descriptions() == [] and busy == [True, False, True, False]


def test_dangling_worker_is_detected(qtbot, _dangling_qthreads):
    pools, threads = _dangling_qthreads
    manager = WorkerManager()
    release = threading.Event()
    manager.start(_blocked, release, description="left running")
    qtbot.waitUntil(lambda: bool(pools), timeout=2000)
    try:
        left = running_threads(pools, threads)  # the job cannot finish until released
        assert left and "active thread" in left[0]  # this is what fails a careless test
    finally:
        release.set()
    assert manager.shutdown(5000)
    assert running_threads(pools, threads) == []


def test_shutdown_with_nothing_running(_dangling_qthreads):
    pools, _threads = _dangling_qthreads
    manager = WorkerManager()
    busy: list[bool] = []
    manager.busy_changed.connect(busy.append)
    assert manager.shutdown(100)
    assert not manager.is_busy and manager.active == [] and busy == [] and pools == []  # no thread was started
