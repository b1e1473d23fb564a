"""Fine-tuning: learns, resumes exactly, pauses, streams with replay, survives kill -9."""

from __future__ import annotations

import json
import math
import signal
import threading

import numpy as np
import pytest
import torch

from tests.train_helpers import make_dataset, start_python, tiny_config, tiny_model, wait_for
from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.progress import CancelToken, run_generator
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.config import AugmentConfig, TrainConfig
from unet_engine.training.fine_tune import EpochReport, StepReport, Trainer, fine_tune
from unet_engine.training.schedule import LRSchedule


def test_short_fine_tune_raises_validation_dice(tmp_path):
    ds = make_dataset(tmp_path)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=60, steps_per_epoch=30, batch_size=8, lr=5e-3, warmup_steps=3,
                      model_spec={"base_width": 8, "depth": 3}, validate_at_start=True, val_max_cases=None)
    reports: list = []
    result = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch", promote=True),
                           reports.append)
    epochs = [r for r in reports if isinstance(r, EpochReport)]
    steps = [r for r in reports if isinstance(r, StepReport)]
    assert [e.epoch for e in epochs] == [0, 1, 2] and len(steps) == 60
    assert all(s.images_per_s > 0 and s.lr > 0 and np.isfinite(s.loss) for s in steps)
    baseline, best = epochs[0].val_mean_dice, result.metrics["val_mean_dice"]
    assert best > baseline + 0.2, (baseline, best)
    assert set(result.metrics["val_dice"]) == {"anterior", "posterior"}
    assert result.metrics["baseline_val_mean_dice"] == pytest.approx(baseline)
    # the new version: registered, active, with lineage, config, snapshot and curves
    info = reg.get(result.version)
    assert reg.active == result.version and info.parent is None
    assert info.config["max_steps"] == 60 and info.curves["epoch"] == [0, 1, 2]
    assert {c["id"] for c in info.dataset["cases"]} == {c.id for c in ds.cases()}
    model, card = load_checkpoint(info.path)
    assert card.metrics["val_mean_dice"] == pytest.approx(best) and card.labels[1] == "anterior"
    # scoring the registered weights again gives the recorded val Dice (same code as inference)
    from unet_engine.training.validation import evaluate_model

    again = evaluate_model(model, card, ds, ds.val_cases())
    assert again.mean_dice == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("stop_step, where", [(7, "at step 7"), (8, "during validation at step 8")])
def test_cancel_then_resume_equals_uninterrupted_run(tmp_path, stop_step, where):
    ds = make_dataset(tmp_path)
    cfg = tiny_config(max_steps=12, steps_per_epoch=4, checkpoint_every_steps=5, val_max_cases=1)
    full = run_generator(fine_tune(cfg, dataset=ds, registry=ModelRegistry(tmp_path / "a"), from_version="scratch"))
    token = CancelToken()

    def stop(r):  # step 8 ends an epoch: the cancel lands in its validation
        if isinstance(r, StepReport) and r.step == stop_step:
            token.cancel()

    reg_b = ModelRegistry(tmp_path / "b")
    with pytest.raises(CancelledError, match=f"cancelled {where} of 12"):
        run_generator(fine_tune(cfg, dataset=ds, registry=reg_b, from_version="scratch", cancel=token), stop)
    state = json.loads(next((tmp_path / "b" / "training").glob("*/state.json")).read_text())
    assert state["step"] == stop_step and reg_b.list() == []
    seen: list = []
    resumed = run_generator(fine_tune(cfg, dataset=ds, registry=reg_b, resume=True), seen.append)
    assert [r.step for r in seen if isinstance(r, StepReport)] == list(range(stop_step + 1, 13))
    assert [r.epoch for r in seen if isinstance(r, EpochReport)] == [2, 3]  # a pending validation runs first
    assert resumed.weights_sha256 == full.weights_sha256  # bit-identical to the uninterrupted run
    assert resumed.curves == full.curves and resumed.steps == 12
    assert not list((tmp_path / "b" / "training").glob("*/state.json"))  # finished: state removed
    # same seed, same weights; also with batches made between steps instead of ahead in a thread
    again = run_generator(fine_tune(cfg.replace(prefetch_batches=0), dataset=ds, registry=ModelRegistry(tmp_path / "c"),
                                    from_version="scratch"))
    assert again.weights_sha256 == full.weights_sha256
    with pytest.raises(SegLoopError, match="no saved training state"):
        run_generator(fine_tune(cfg, dataset=ds, registry=reg_b, resume=True))


class _PollCountingEvent(threading.Event):
    """A pause event that counts how often the run checked it while it was set."""

    polls_while_set = 0

    def is_set(self) -> bool:
        on = super().is_set()
        self.polls_while_set += on
        return on


def test_pause_saves_state_and_continues(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    pause = _PollCountingEvent()
    cfg = tiny_config(max_steps=6, steps_per_epoch=3, val_max_cases=1)
    reports: list = []
    at_pause: dict = {}
    waiter: list[threading.Thread] = []

    def release_after_polls():  # the run checks the pause again and again, and steps no further
        assert wait_for(lambda: pause.polls_while_set >= 4, timeout=30, interval=0.01)
        at_pause["reports_at_resume"] = len(reports)
        pause.clear()

    def on(r):
        reports.append(r)
        if isinstance(r, StepReport) and r.step == 2 and not r.paused:
            pause.set()
        elif isinstance(r, StepReport) and r.paused:  # the state is on disk before the paused report
            at_pause["state"] = json.loads(next((tmp_path / "models" / "training").glob("*/state.json")).read_text())
            at_pause["reports"] = len(reports)
            waiter.append(threading.Thread(target=release_after_polls))
            waiter[-1].start()

    result = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch", pause=pause), on)
    waiter[0].join(10)
    paused = [r for r in reports if isinstance(r, StepReport) and r.paused]
    assert len(paused) == 1 and paused[0].step == 2 and result.steps == 6
    assert at_pause["state"]["step"] == 2  # pausing saved a resumable state
    assert at_pause["reports_at_resume"] == at_pause["reports"]  # nothing ran while paused
    steps = [r.step for r in reports if isinstance(r, StepReport) and not r.paused]
    assert steps == [1, 2, 3, 4, 5, 6]  # and it continued where it paused
    assert reg.list()[0].version == result.version and result.curves == reg.get(result.version).curves
    assert not list((tmp_path / "models" / "training").glob("*/state.json"))  # finished: state removed


def test_replay_mix_and_bounded_streaming(tmp_path):
    from unet_engine.training.sampling import CaseStream, PatchExtractor, ReplaySampler, decode_case

    ds = make_dataset(tmp_path)
    ids = [c.id for c in ds.train_cases()]
    loaded: list[str] = []

    def loader(cid):
        loaded.append(cid)
        return decode_case(ds, cid, {"mode": "mr"})

    ex = PatchExtractor(2, 0, (48, 64), 0.5, 2.0)

    def sampler(cache_bytes: int) -> ReplaySampler:
        return ReplaySampler(new_ids=ids[:2], old_ids=ids[2:], loader=loader, extractor=ex, batch_size=8,
                             replay_ratio=0.25, cache_cases=1, samples_per_case=3, seed=0, cache_bytes=cache_bytes)

    s = sampler(0)  # no room beyond the working sets
    assert s.split() == (6, 2)
    batches = []
    for _ in range(10):
        x, y, w = s.next_batch()
        batches.append(x)
        assert x.shape == (8, 1, 48, 64) and y.shape == w.shape == (8, 48, 64)
        assert len(s.cache) <= 2  # never more than the working sets in memory
    assert set(loaded) == set(ids) and len(loaded) > len(ids)  # cases stream in and out
    # with room for them, small cases are decoded once each; the batches are the same
    loaded.clear()
    roomy = sampler(1 << 30)
    assert all(np.array_equal(roomy.next_batch()[0], x) for x in batches)
    assert sorted(loaded) == sorted(ids) and len(roomy.cache) == len(ids)
    # ranks see disjoint cases of each pass
    shards = [CaseStream(ids, seed=3, tag=1, working_set=1, samples_per_case=1, rank=r, world=2) for r in (0, 1)]
    rng = np.random.default_rng(0)
    first = [{st.draw(rng) for _ in range(3)} for st in shards]
    assert not first[0] & first[1] and first[0] | first[1] == set(ids)


def test_samples_weight_edits_and_padding(tmp_path):
    from unet_engine.training.sampling import DecodedCase, PatchExtractor

    img = np.random.default_rng(0).normal(size=(5, 10, 12)).astype(np.float32)
    lab = np.zeros((5, 10, 12), np.uint8)
    lab[2, 3:6, 4:8] = 2
    edits = np.zeros_like(lab, bool)
    edits[2, 3, 4] = True
    case = DecodedCase("c", img, lab, edits, np.argwhere(lab > 0).astype(np.int32), 0)
    s = PatchExtractor(2, 1, (16, 16), 1.0, 3.0)(case, np.random.default_rng(1))
    assert s.image.shape == (3, 16, 16) and s.label.shape == (16, 16)
    np.testing.assert_array_equal(s.image[1, 3:13, 2:14], img[2])  # centred, like inference pads
    assert s.weight[3 + 3, 2 + 4] == 4.0 and s.weight[0, 0] == 0.0 and s.weight[5, 5] == 1.0
    s3 = PatchExtractor(3, 0, (8, 8, 8), 0.0, 0.0)(case, np.random.default_rng(2))
    assert s3.image.shape == (1, 8, 8, 8) and s3.weight[5:].sum() == 0  # 3D pads after the volume


@pytest.mark.parametrize("dims", [2, 3])
def test_patches_past_the_volume_are_padded_as_numpy_pads_them(dims):
    """Images repeat their edge voxels, labels and edits get zeros, exactly as ``np.pad`` (2D centred, 3D after)."""
    from unet_engine.training.sampling import DecodedCase, PatchExtractor

    rng = np.random.default_rng(dims)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 14, 3))
        img = rng.normal(size=shape).astype(np.float32)
        lab = rng.integers(0, 3, shape).astype(np.uint8)
        case = DecodedCase("c", img, lab, lab > 1, np.argwhere(lab > 0).astype(np.int32), 0)
        patch = tuple(int(n) for n in rng.integers(2, 12, dims))
        s = PatchExtractor(dims, 0, patch, 0.5, 1.0)(case, np.random.default_rng(int(rng.integers(1 << 30))))
        sources = [(img[k][None], lab[k]) for k in range(shape[0])] if dims == 2 else [(img[None], lab)]
        assert any(_matches(s, im, lb, patch, dims) for im, lb in sources), (shape, patch)


def _matches(s, img: np.ndarray, lab: np.ndarray, patch: tuple[int, ...], dims: int) -> bool:
    """Whether sample ``s`` equals some window of (img, lab) padded as ``np.pad`` does."""
    import itertools

    spans = [[(st, 0) for st in range(n - p + 1)] if p < n else [(0, p - n)] for n, p in zip(lab.shape, patch)]
    for choice in itertools.product(*spans):
        cut = tuple(slice(st, st + min(p, n)) for (st, _), p, n in zip(choice, patch, lab.shape))
        widths = [((pd // 2, pd - pd // 2) if dims == 2 else (0, pd)) for _, pd in choice]
        ref_img = np.pad(img[(slice(None), *cut)], [(0, 0), *widths], mode="edge")
        ref_lab = np.pad(lab[cut], widths, mode="constant")
        if np.array_equal(ref_img, s.image) and np.array_equal(ref_lab, s.label):
            return s.image.flags.c_contiguous and s.label.flags.c_contiguous
    return False


def test_augment_keeps_label_values_and_is_seeded():
    from unet_engine.training.augment import Augmenter

    g = torch.Generator().manual_seed(0)
    img = torch.randn(4, 1, 24, 32)
    lab = torch.randint(0, 3, (4, 24, 32))
    aug = Augmenter(AugmentConfig(p_flip=0.5, p_spatial=1.0, p_gamma=1.0, p_noise=1.0), 2)
    x, y, w = aug(img, lab, None, g)
    assert x.shape == img.shape and set(y.unique().tolist()) <= {0, 1, 2} and w.shape == lab.shape
    assert torch.isfinite(x).all() and ((w == 0) | (w == 1)).all()
    x2, y2, _ = aug(img, lab, None, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    off = Augmenter(AugmentConfig(p_flip=0, p_spatial=0, p_intensity=0, p_gamma=0, p_noise=0), 2)
    x3, y3, _ = off(img, lab, torch.ones(4, 24, 32), g)
    assert torch.equal(x3, img) and torch.equal(y3, lab)
    flip = Augmenter(AugmentConfig(p_flip=1.0, flip_axes=[1], p_spatial=0, p_intensity=0, p_gamma=0, p_noise=0), 2)
    x4, y4, _ = flip(img, lab, None, g)
    assert torch.equal(y4, lab.flip(-1)) and torch.allclose(x4, img.flip(-1), atol=1e-5)
    a3 = Augmenter(AugmentConfig(p_spatial=1.0), 3)
    x5, y5, _ = a3(torch.randn(2, 1, 8, 12, 16), torch.randint(0, 3, (2, 8, 12, 16)), None, g)
    assert x5.shape == (2, 1, 8, 12, 16) and set(y5.unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("spec", [{"dims": 3, "base_width": 4, "depth": 2},
                                  {"dims": 2, "in_channels": 3, "context_slices": 1, "base_width": 4, "depth": 2}])
def test_3d_and_2_5d_models_train(tmp_path, spec):
    ds = make_dataset(tmp_path, limit=5)
    cfg = tiny_config(max_steps=3, steps_per_epoch=3, batch_size=2, model_spec=spec, patch_size=None,
                      val_max_cases=1)
    res = run_generator(fine_tune(cfg, dataset=ds, registry=ModelRegistry(tmp_path / "m"), from_version="scratch"))
    _, card = load_checkpoint(res.checkpoint_path)
    assert card.spec.dims == spec["dims"] and res.metrics["val_dice"]
    if spec["dims"] == 3:
        biggest = np.max([c.shape for c in ds.train_cases()], axis=0)  # whole volumes, rounded up to 2**depth
        assert card.training["patch_size"] == [int(np.ceil(n / 4) * 4) for n in biggest]  # inference tiles with it


def test_fine_tune_from_version_replays_earlier_cases(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    first = run_generator(fine_tune(tiny_config(max_steps=2, steps_per_epoch=2), dataset=ds, registry=reg,
                                    from_version="scratch", promote=True))
    from tests.train_helpers import HIPPO
    from unet_engine.io.volume_io import read_volume

    for name in ("hippocampus_221", "hippocampus_320"):
        ds.add_case(read_volume(HIPPO / "imagesTr" / f"{name}.nii.gz"),
                    read_volume(HIPPO / "labelsTr" / f"{name}.nii.gz").array, model_version=first.version)
    trainer = Trainer(tiny_config(max_steps=2, steps_per_epoch=2), dataset=ds, registry=reg)
    seen = {"new": trainer.new_ids, "old": trainer.replayed_ids}
    second = run_generator(trainer.run())
    new_train = {c.id for c in ds.train_cases()} - {c["id"] for c in reg.get(first.version).dataset["cases"]}
    assert set(seen["new"]) == new_train and seen["old"]
    assert second.parent == first.version and reg.get(second.version).parent == first.version


def _saved_step(training_dir) -> int:
    """The step of the newest saved training state under ``training_dir`` (-1: none yet)."""
    for path in training_dir.glob("*/state.json"):
        try:
            return int(json.loads(path.read_text())["step"])
        except (OSError, ValueError, KeyError):
            return -1
    return -1


def test_kill9_during_training_keeps_previous_version_and_dataset(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    model, card = tiny_model(0)
    v1 = reg.add_version(model, card, promote=True)
    cfg = tiny_config(max_steps=10_000, steps_per_epoch=10_000, checkpoint_every_steps=2)
    proc = start_python(
        "from unet_engine.cli.main import main\n"
        f"main(['train', '--dataset', {str(ds.folder)!r}, '--registry', {str(reg.root)!r}, "
        f"'--config', {cfg.to_json()!r}])\n")
    try:
        # killed after its second saved step, so the kill lands in a run with progress behind it
        assert wait_for(lambda: _saved_step(reg.root / "training") >= 4, timeout=90), proc.stderr.read() \
            if proc.poll() is not None else "no state"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert reg.active == v1.version and [v.version for v in reg.list()] == [v1.version]
    load_checkpoint(reg.active_checkpoint_path())
    for c in ds.cases():
        ds.load_case(c)
    saved = json.loads(next((reg.root / "training").glob("*/state.json")).read_text())
    token = CancelToken()
    steps: list[int] = []

    def stop(r):
        if isinstance(r, StepReport):
            steps.append(r.step)
            token.cancel()

    with pytest.raises(CancelledError):  # the killed run resumes from its last saved step
        run_generator(fine_tune(TrainConfig(), dataset=ds, registry=reg, resume=True, cancel=token), stop)
    assert steps == [saved["step"] + 1] and saved["config"]["max_steps"] == 10_000 and saved["parent"] == v1.version


def _schedule(deadline_s=None):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, LRSchedule(opt, warmup=4, total=20, min_ratio=0.1, deadline_s=deadline_s)


def _rates(steps, elapsed=lambda step: 0.0, deadline_s=None):
    """The learning rate used at each of ``steps`` optimizer steps."""
    opt, sched = _schedule(deadline_s)
    out = []
    for i in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.advance(i + 1, elapsed(i + 1))
    return out


def test_schedule_and_config():
    lrs = _rates(21)
    assert [round(v, 3) for v in lrs[:4]] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0) and lrs[20] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.55)
    # half the time budget used after 5 steps: the cosine is at least half-way
    behind = _rates(17, elapsed=lambda step: 50.0 if step >= 5 else 0.0, deadline_s=100.0)
    assert behind[5] == pytest.approx(0.55)
    assert behind[16] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    # a resumed schedule (through JSON) continues where it was
    opt, sched = _schedule()
    for i in range(7):
        opt.step()
        sched.advance(i + 1)
    opt2, sched2 = _schedule()
    opt2.load_state_dict(opt.state_dict())  # as a resumed run restores the optimizer (its rates) first
    sched2.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    for i in range(7, 12):
        opt.step()
        sched.advance(i + 1)
        opt2.step()
        sched2.advance(i + 1)
        assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"]) == pytest.approx(lrs[i + 1])
    cfg = TrainConfig(epochs=3, augment={"p_flip": 0.1})
    assert TrainConfig.from_json(cfg.to_json()) == cfg and cfg.augment.p_flip == 0.1
    with pytest.raises(SegLoopError, match="unknown setting"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(SegLoopError, match="replay_ratio"):
        TrainConfig(replay_ratio=2.0)


def test_a_run_behind_its_planned_pace_still_decays_its_rate_by_the_deadline(tmp_path):
    """Far more steps planned than the minutes allow (a busy machine): the clock, not the step
    count, then drives the cosine, so the run is cut at the lowest rate, not at a high one."""
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=100_000, steps_per_epoch=100_000, max_minutes=0.05, lr=1e-2, min_lr_ratio=0.02)
    reports: list = []
    result = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch"), reports.append)
    steps = [r for r in reports if isinstance(r, StepReport)]
    result_lrs = [r.lr for r in steps]
    assert result.stopped == "time-limit" and max(result_lrs) == pytest.approx(1e-2, rel=0.05)
    assert result_lrs[-1] < 0.2 * 1e-2  # the step schedule alone would still be at ~1e-2 here
    assert all(b <= a + 1e-12 for a, b in zip(result_lrs[cfg.warmup_steps:], result_lrs[cfg.warmup_steps + 1:]))


def test_closing_the_generator_keeps_the_run_resumable(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=6, steps_per_epoch=3, val_max_cases=1)
    gen = fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch")
    while not (isinstance(r := next(gen), StepReport) and r.step == 3):
        pass
    gen.close()  # e.g. the GUI's worker quits without cancelling
    assert json.loads(next((reg.root / "training").glob("*/state.json")).read_text())["step"] == 3
    seen: list = []
    res = run_generator(fine_tune(cfg, dataset=ds, registry=reg, resume=True), seen.append)
    assert res.steps == 6 and [r.epoch for r in seen if isinstance(r, EpochReport)] == [1, 2]


def test_starts_from_the_bundled_default_model(tmp_path, monkeypatch):
    import unet_engine.registry.versions as registry_mod
    import unet_engine.training.setup as setup_mod
    from unet_engine.model.checkpoint import save_checkpoint

    model, card = tiny_model(7)
    save_checkpoint(model, card, tmp_path / "bundled" / "default")
    monkeypatch.setattr(registry_mod, "BUNDLED_MODELS", tmp_path / "bundled")
    monkeypatch.setattr(setup_mod, "BUNDLED_MODELS", tmp_path / "bundled")
    ds = make_dataset(tmp_path, limit=4)
    reg = ModelRegistry(tmp_path / "models")
    cfg = tiny_config(max_steps=2, steps_per_epoch=2)
    first = run_generator(fine_tune(cfg, dataset=ds, registry=reg))  # empty registry: default imported first
    assert [(v.version, v.source) for v in reg.list()] == [("v0001", "bundled-default"), ("v0002", "fine-tune")]
    assert first.parent == "v0001" and reg.active == "v0001"
    reg.promote("v0002")
    again = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="default"))
    assert again.parent == "v0001" and len(reg.list()) == 3


def test_a_version_records_how_many_cases_its_validation_had(tmp_path, one_torch_thread):
    """'no validation yet' needs the count: a version validated on one case says so."""
    from unet_engine.training.validation import validation_text

    ds = make_dataset(tmp_path, limit=3)  # one case in the validation split
    reg = ModelRegistry(tmp_path / "models")
    res = run_generator(fine_tune(tiny_config(max_steps=2, steps_per_epoch=2), dataset=ds, registry=reg,
                                  from_version="scratch"))
    metrics = reg.get(res.version).metrics
    assert metrics["val_cases"] == 1 and validation_text(metrics) == "no validation yet (1 case)"
    assert set(metrics["val_dice"]) | set(metrics["val_na_labels"]) == {"anterior", "posterior"}


def test_cpu_bfloat16_training_runs_and_takes_its_own_path(tmp_path):
    """``cpu_bf16``: the same run under bfloat16 autocast ends with finite, different weights,
    and is as reproducible as the float32 run."""
    ds = make_dataset(tmp_path, limit=4)
    cfg = tiny_config(max_steps=4, steps_per_epoch=4, val_max_cases=1)
    runs = {}
    for name, bf16 in (("fp32", False), ("bf16", True), ("bf16-again", True)):
        res = run_generator(fine_tune(cfg.replace(cpu_bf16=bf16), dataset=ds, registry=ModelRegistry(tmp_path / name),
                                      from_version="scratch"))
        model, _ = load_checkpoint(res.checkpoint_path)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        runs[name] = res.weights_sha256
    assert runs["bf16"] != runs["fp32"] and runs["bf16"] == runs["bf16-again"]
