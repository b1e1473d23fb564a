"""Fine-tuning in a spawned child process (unet_engine.jobs.training_process), without Qt, on real
hippocampus cases: reports and result over the queue, pause/resume/cancel over events,
errors by type name, a killed child, and no child process or thread left behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

from tests.train_helpers import make_dataset, tiny_config, tiny_model


@pytest.fixture(autouse=True)
def _no_children_left():
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and (mp.active_children() or set(threading.enumerate()) - threads_before):
        time.sleep(0.05)
    assert mp.active_children() == [], "a training process was left running"
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left running: {left}"


def _registry(tmp_path):
    from unet_engine.registry.versions import ModelRegistry

    reg = ModelRegistry(tmp_path / "models")
    model, card = tiny_model(seed=1)
    reg.add_version(model, card, promote=True)  # v0001
    return reg


def _run_until(proc, predicate, timeout=90.0):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += proc.poll(timeout=0.1)
        if predicate(got):
            return got
    raise AssertionError(f"timed out; reports so far: {len(got)}, error {proc.error}")


def test_a_run_in_a_child_process_reports_every_step_and_adds_a_version(tmp_path):
    from unet_engine.jobs.training_process import start_training_process
    from unet_engine.training.fine_tune import EpochReport, StepReport, TrainResult

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=3)
    cfg = tiny_config(model_spec=None, max_steps=4, steps_per_epoch=2, validate_at_start=True)
    proc = start_training_process(cfg, ds.folder, reg.root, None, segloop_home=tmp_path / "home", num_threads=1)
    reports = _run_until(proc, lambda _g: proc.done)
    assert proc.error is None, proc.error
    steps = [r for r in reports if isinstance(r, StepReport)]
    epochs = [r for r in reports if isinstance(r, EpochReport)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert [e.epoch for e in epochs] == [0, 1, 2]
    res = proc.result
    assert isinstance(res, TrainResult) and res.version == "v0002" and res.parent == "v0001" and res.steps == 4
    assert proc.child_pid == proc.pid != os.getpid()
    assert proc.join(30.0) and proc.exitcode == 0
    proc.close()
    assert [v.version for v in reg.list()] == ["v0001", "v0002"] and reg.active == "v0001"


def test_a_budget_in_minutes_is_fitted_to_a_complete_schedule_in_the_child(tmp_path):
    """The panel's minutes: the child measures steps first, so the run's schedule ends inside
    the budget (max_steps fitted, max_minutes kept as the safety cut)."""
    from unet_engine.jobs.training_process import start_training_process
    from unet_engine.training.fine_tune import StepReport

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=3)
    cfg = tiny_config(model_spec=None, max_steps=None).replace(max_minutes=0.3)  # as the panel builds it
    proc = start_training_process(cfg, ds.folder, reg.root, None, num_threads=1, fit_minutes=0.3)
    reports = _run_until(proc, lambda _g: proc.done, timeout=180)
    assert proc.error is None, proc.error
    used = reg.get(proc.result.version).config
    steps = [r for r in reports if isinstance(r, StepReport)]
    assert used["max_minutes"] == 0.3 and used["max_steps"] != cfg.total_steps
    assert steps[-1].total_steps == used["max_steps"]  # the schedule the run followed is the fitted one
    assert proc.join(30.0) and proc.exitcode == 0
    proc.close()


def test_pause_resume_cancel_cross_the_process_boundary(tmp_path):
    from unet_engine.errors import CancelledError
    from unet_engine.jobs.training_process import start_training_process

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=2)
    proc = start_training_process(tiny_config(model_spec=None, max_steps=500), ds.folder, reg.root, None, num_threads=1)
    try:
        _run_until(proc, lambda g: len(g) >= 1)
        proc.pause()
        seen = _run_until(proc, lambda g: any(r.paused for r in g if hasattr(r, "paused")))
        at = [r for r in seen if getattr(r, "paused", False)][-1].step
        # (that no step runs while paused is tested in-process, where the pause polls can be counted:
        # tests/test_training.py::test_pause_saves_state_and_continues)
        proc.resume()
        more = _run_until(proc, lambda g: any(getattr(r, "step", 0) > at for r in g))
        assert more and proc.is_alive()
        proc.cancel()
        _run_until(proc, lambda _g: proc.done, timeout=30.0)
        assert proc.result is None and proc.error.type_name == "CancelledError"
        exc = proc.error.to_exception()
        assert isinstance(exc, CancelledError) and "resumed" in str(exc)
    finally:
        assert proc.stop(30.0)
    assert [v.version for v in reg.list()] == ["v0001"]


def test_errors_come_back_as_type_and_message(tmp_path):
    from unet_engine.errors import SegLoopError
    from unet_engine.jobs.training_process import start_training_process

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=2)
    proc = start_training_process(tiny_config(model_spec=None), ds.folder, reg.root, "v0042", num_threads=1)
    _run_until(proc, lambda _g: proc.done)
    assert proc.stop(10.0)
    err = proc.error
    assert err is not None and err.type_name.endswith("Error") and "v0042" in err.message
    exc = err.to_exception()
    assert isinstance(exc, SegLoopError) and "v0042" in str(exc)


def test_a_killed_child_is_reported_and_the_registry_stays_intact(tmp_path):
    from unet_engine.jobs.training_process import start_training_process

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=2)
    proc = start_training_process(tiny_config(model_spec=None, max_steps=500), ds.folder, reg.root, None,
                                  num_threads=1)
    _run_until(proc, lambda g: len(g) >= 2)
    os.kill(proc.pid, signal.SIGKILL)
    _run_until(proc, lambda _g: proc.done, timeout=30.0)
    assert proc.result is None and "SIGKILL" in proc.error.message and "unchanged" in proc.error.message
    assert not proc.stop(1.0) or proc.exitcode == -signal.SIGKILL
    assert [v.version for v in reg.list()] == ["v0001"] and reg.active == "v0001"
    model, _card = reg.load("v0001")  # the previous version still loads
    assert model is not None


def test_stop_ends_a_paused_run(tmp_path):
    from unet_engine.jobs.training_process import start_training_process

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=2)
    proc = start_training_process(tiny_config(model_spec=None, max_steps=500), ds.folder, reg.root, None,
                                  num_threads=1)
    _run_until(proc, lambda g: len(g) >= 1)
    proc.pause()
    _run_until(proc, lambda g: any(getattr(r, "paused", False) for r in g))
    assert proc.stop(20.0)  # cancel reaches the paused loop; no terminate needed
    assert not proc.is_alive() and proc.exitcode == 0  # it returned by itself: terminate would give -SIGTERM
    assert proc.error is not None and proc.error.type_name == "CancelledError"


def test_the_child_stops_when_its_parent_dies(tmp_path):
    """A GUI killed mid-run must not leave an orphan training process behind."""
    from tests.train_helpers import start_python, wait_for

    reg = _registry(tmp_path)
    ds = make_dataset(tmp_path, limit=2)
    code = f"""
import sys, time
from tests.train_helpers import tiny_config
from unet_engine.jobs.training_process import start_training_process
proc = start_training_process(tiny_config(model_spec=None, max_steps=5000), {str(ds.folder)!r}, {str(reg.root)!r},
                              None, num_threads=1)
while not proc.poll(timeout=0.1):
    pass
print(proc.pid, flush=True)
time.sleep(600)
"""
    parent = start_python(code)
    try:
        child_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(child_pid, 0)
            except ProcessLookupError:
                return True
            try:
                with open(f"/proc/{child_pid}/stat") as f:  # a zombie (reaped by init later) counts as gone
                    return f.read().split(")")[-1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        assert wait_for(gone, timeout=60.0), "the training process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
    assert [v.version for v in reg.list()] == ["v0001"]
