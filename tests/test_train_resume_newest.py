"""A new run replaces an older paused run's saved state at its start: ``--resume`` never
continues the older run after the new one was killed before its first save."""

from __future__ import annotations

import json

import pytest

from tests.train_helpers import make_dataset, tiny_config
from unet_engine.training import state as ts
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.progress import CancelToken, run_generator
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.fine_tune import StepReport, fine_tune


def _states(reg: ModelRegistry) -> list:
    return list((reg.root / "training").glob("*/state.json"))


def test_a_new_run_killed_before_its_first_save_leaves_nothing_to_resume(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=8, steps_per_epoch=4, checkpoint_every_steps=100, val_max_cases=1)
    token = CancelToken()

    def stop(r):
        if isinstance(r, StepReport) and r.step == 3:
            token.cancel()

    with pytest.raises(CancelledError):  # the older run: paused (cancelled) at step 3, state saved
        run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch", cancel=token), stop)
    assert [json.loads(p.read_text())["step"] for p in _states(reg)] == [3]

    new = fine_tune(cfg.replace(seed=5), dataset=ds, registry=reg, from_version="scratch")
    first = next(r for r in new if isinstance(r, StepReport))
    assert first.step == 1 and _states(reg) == []  # the older run's state is gone at the new run's start
    monkeypatch.setattr(ts, "save_state", lambda *a, **k: None)  # a kill: the new run never saves
    new.close()
    monkeypatch.undo()
    with pytest.raises(SegLoopError, match="no saved training state.*newer run"):
        run_generator(fine_tune(cfg, dataset=ds, registry=reg, resume=True))


def test_resume_continues_the_newest_run(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=8, steps_per_epoch=4, checkpoint_every_steps=100, val_max_cases=1)
    for seed, at in ((1, 2), (2, 5)):  # two runs paused in turn: the second replaces the first
        token = CancelToken()

        def stop(r, at=at, token=token):
            if isinstance(r, StepReport) and r.step == at:
                token.cancel()

        with pytest.raises(CancelledError):
            run_generator(fine_tune(cfg.replace(seed=seed), dataset=ds, registry=reg, from_version="scratch",
                                    cancel=token), stop)
    saved = [json.loads(p.read_text()) for p in _states(reg)]
    assert [(s["step"], s["config"]["seed"]) for s in saved] == [(5, 2)]
    seen: list = []
    res = run_generator(fine_tune(cfg, dataset=ds, registry=reg, resume=True), seen.append)
    assert [r.step for r in seen if isinstance(r, StepReport)] == [6, 7, 8] and res.steps == 8


def test_retire_state_without_a_saved_state_is_a_no_op(tmp_path):
    assert ts.retire_state(tmp_path / "none") is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text('{"step": 4}')
    (tmp_path / "run" / "state-00000004.safetensors").write_bytes(b"x")
    assert ts.retire_state(tmp_path / "run") == 4
    assert not (tmp_path / "run").exists()
