"""Planning a first model: fingerprint, plan rules, the user's changes, TrainConfig, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train_helpers import LABELS, make_dataset
from unet_engine.errors import SegLoopError
from unet_engine.planning import (
    CaseFingerprint,
    DatasetFingerprint,
    TrainingPlan,
    calibrate_plan,
    fingerprint_dataset,
    fit_config_to_minutes,
    make_plan,
    normalize_modality,
    plan_first_model,
)
from unet_engine.planning import cost
from unet_engine.training.config import TrainConfig

SPLEEN = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hippo(tmp_path_factory):
    """The 8 hippocampus fixture cases as a retraining dataset (2 in its val split)."""
    return make_dataset(tmp_path_factory.mktemp("plan"), "hippo")


def _fp(spacing, shape, n=4, modality="MR", labels=None, lr_axis=2, intensity=None) -> DatasetFingerprint:
    cases = [CaseFingerprint(f"c{i}", list(shape), list(spacing), {1: 1000}, "train", lr_axis) for i in range(n)]
    return DatasetFingerprint(modality, labels or {1: "heart"}, cases, intensity)


# ----- fingerprint ----------------------------------------------------------------------------------


def test_fingerprint_of_the_hippocampus_cases(hippo):
    fp = fingerprint_dataset(hippo, "MRI")
    assert fp.modality == "MR" and fp.labels == LABELS
    infos = {c.id: c for c in hippo.cases()}
    assert {c.id for c in fp.cases} == set(infos)
    for c in fp.cases:
        assert c.shape == infos[c.id].shape and c.spacing == pytest.approx(infos[c.id].spacing)
        assert c.label_voxels == {int(k): v for k, v in infos[c.id].label_voxels.items()}
        assert c.lr_axis == 2  # RAS NIfTI: the i axis runs left-right
    assert fp.median_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert fp.n_val == len(hippo.val_cases()) and fp.intensity is None  # intensities are sampled for CT only
    again = DatasetFingerprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert again == fp


def test_ct_fingerprint_samples_the_labelled_intensities(tmp_path):
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.io.volume_io import read_mask, read_volume

    image = read_volume(SPLEEN / "image.nii.gz")
    label = np.asarray(read_mask(SPLEEN / "label.nii.gz", image))
    ds = RetrainingDataset.create(tmp_path / "ct", {1: "spleen"}, modality="CT", val_fraction=0.0)
    ds.add_case(image, label, case_id="spleen")
    fp = fingerprint_dataset(ds, "CT")
    fg = np.asarray(image.array, dtype=np.float64)[label > 0]  # fewer than the sample cap: all of them
    assert fp.intensity["samples"] == fg.size
    assert fp.intensity["p00_5"] == pytest.approx(np.percentile(fg, 0.5))
    assert fp.intensity["p99_5"] == pytest.approx(np.percentile(fg, 99.5))
    plan = make_plan(fp, device="cpu", steps=50, threads=1)
    assert plan.dims == 2  # 0.79 x 0.79 x 5 mm: anisotropic
    assert plan.normalization["mode"] == "ct"
    assert plan.normalization["ct_window"] == pytest.approx([fp.intensity["p00_5"], fp.intensity["p99_5"]])
    assert plan.augment["flip_axes"] == [1]  # i is left-right; in a k-slice it is the second axis


def test_modality_names():
    assert normalize_modality("MRI") == "MR" and normalize_modality("ct") == "CT" and normalize_modality("Other") == "other"
    assert normalize_modality("T2", strict=False) == "MR" and normalize_modality("unknown", strict=False) == "other"
    with pytest.raises(SegLoopError, match="PET"):
        normalize_modality("PET")
    with pytest.raises(SegLoopError, match="no cases"):
        DatasetFingerprint("MR", {1: "x"}, [])


# ----- the rules --------------------------------------------------------------------------------------


def test_near_isotropic_small_volumes_get_a_3d_plan(hippo):
    plan = make_plan(fingerprint_dataset(hippo), device="cpu", minutes=5, threads=1)
    assert plan.dims == 3 and plan.context_slices == 0
    assert plan.target_spacing == pytest.approx([1.0, 1.0, 1.0])
    m = 2**plan.depth
    median = fingerprint_dataset(hippo).median_shape
    assert all(p % m == 0 and p >= n for p, n in zip(plan.patch_size, median))  # the whole median volume
    assert min(plan.patch_size) // m >= 4 and min(plan.patch_size) // (2 * m) < 4  # bottleneck: a few voxels
    assert plan.batch_size >= 2
    assert plan.normalization["mode"] == "mr" and plan.normalization["foreground"] == "nonzero"
    assert plan.augment["flip_axes"] == [2]  # left-right only: the labels are anterior / posterior
    assert plan.max_steps * plan.seconds_per_step <= 5 * 60
    assert all(plan.reasons[k] for k in ("dims", "target_spacing", "patch_size", "batch_size", "normalization",
                                         "schedule", "augment", "network"))


def test_thick_slices_get_a_2_5d_in_plane_plan():
    fp = _fp((10.0, 1.5, 1.5), (10, 256, 216), labels={1: "right ventricle", 2: "myocardium", 3: "left ventricle"})
    plan = make_plan(fp, device="cpu", steps=100, threads=1)
    assert plan.dims == 2 and plan.context_slices == 1 and plan.in_channels == 3
    assert plan.target_spacing == [None, 1.5, 1.5]  # the slice axis stays native
    assert plan.patch_size == [256, 224] and plan.depth == 5  # 224 / 2**5 = 7 voxels at the bottleneck
    assert plan.augment["flip_axes"] == []  # labels name sides: mirroring would swap them
    assert plan.model_spec()["num_classes"] == 4
    assert "anisotropy 6.7x" in plan.reasons["dims"]


def test_normalisation_follows_the_modality():
    us = make_plan(_fp((1.0, 0.5, 0.5), (20, 64, 64), modality="US"), device="cpu", steps=50, threads=1)
    assert us.normalization["mode"] == "mr" and us.normalization["foreground"] == "all"
    ct = make_plan(_fp((1.0, 1.0, 1.0), (32, 32, 32), modality="CT"), device="cpu", steps=50, threads=1)
    assert ct.normalization["mode"] == "ct" and "no labelled voxels" in ct.reasons["normalization"]


def test_large_volumes_on_a_cpu_go_2d_when_a_3d_patch_would_see_little():
    fp = _fp((1.0, 0.8, 0.8), (300, 512, 512), modality="CT", intensity={"p00_5": -100.0, "p99_5": 300.0,
                                                                           "samples": 1000.0})
    plan = make_plan(fp, device="cpu", steps=100, threads=1)
    assert plan.dims == 2 and "would cover only" in plan.reasons["dims"]
    assert plan.seconds_per_step <= cost.CPU_STEP_MAX_S  # patch shrunk to a sane CPU step


# ----- the user's changes ("Advanced") ------------------------------------------------------------------


def test_changes_replan_what_depends_on_them():
    fp = _fp((10.0, 1.5, 1.5), (10, 256, 216))
    plan = make_plan(fp, device="cpu", minutes=10, threads=1)
    three = plan.with_changes(dims=3)
    assert three.dims == 3 and three.context_slices == 0 and len(three.patch_size) == 3
    assert three.target_spacing[0] == pytest.approx(10.0)  # 10th percentile of the thick axis
    assert "dims" in three.user_set and "set by you" in three.summary_lines()[0]
    longer = plan.with_changes(minutes=20)
    assert longer.patch_size == plan.patch_size and longer.max_steps > plan.max_steps
    narrow = plan.with_changes(base_width=8, batch_size=2)
    assert narrow.base_width == 8 and narrow.batch_size == 2 and narrow.parameters < plan.parameters
    again = narrow.with_changes(minutes=5)  # earlier choices stay fixed
    assert again.base_width == 8 and again.batch_size == 2


@pytest.mark.parametrize("changes, message", [
    ({"dims": 4}, "dims"),
    ({"patch_size": [30, 30]}, r"multiples of 4 .*e.g. \[32, 32\]"),
    ({"patch_size": [48, 48], "depth": 5}, "multiples of 32"),
    ({"dims": 2, "patch_size": [64, 64, 64]}, "3 sizes but the model is 2D"),
    ({"depth": 9}, "depth"),
    ({"base_width": 0}, "base_width"),
    ({"minutes": 0}, "minutes"),
    ({"minutes": 0.01}, "give at least"),
    ({"batch_size": 4000}, "GB"),
    ({"batch_size": 100000}, "batch_size"),
    ({"target_spacing": [1.0, -1.0, 1.0]}, "target_spacing"),
    ({"normalization": "loud"}, "normalization"),
    ({"lr": 5.0}, "lr"),
    ({"colour": "red"}, "cannot change colour"),
    ({"dims": 3, "context_slices": 1}, "context_slices"),
])
def test_nonsense_changes_are_refused(changes, message):
    plan = make_plan(_fp((10.0, 1.5, 1.5), (10, 256, 216)), device="cpu", minutes=10, threads=1)
    with pytest.raises(SegLoopError, match=message):
        plan.with_changes(**changes)


def test_plan_round_trips_through_json_and_prints_its_reasons():
    plan = make_plan(_fp((10.0, 1.5, 1.5), (10, 256, 216)), device="cpu", minutes=10, threads=1)
    again = TrainingPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    text = "\n".join(plan.summary_lines())
    for word in ("2.5D", "Target spacing", "Patch", "batch", "Normalisation", "10 min", "steps", "why"):
        assert word in text
    with pytest.raises(SegLoopError, match="unknown field"):
        TrainingPlan.from_dict({**plan.to_dict(), "speed": 3})
    with pytest.raises(SegLoopError, match="patch_size"):
        TrainingPlan.from_dict({**plan.to_dict(), "patch_size": [250, 224]})


# ----- into training -------------------------------------------------------------------------------------


def _tiny(fp: DatasetFingerprint, **extra) -> TrainingPlan:
    return make_plan(fp, device="cpu", steps=20, threads=1,
                     overrides={"base_width": 4, "depth": 2, "patch_size": [16, 16, 16], "batch_size": 2, **extra})


def test_train_config_trains_exactly_the_planned_network(hippo, tmp_path):
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.fine_tune import fine_tune

    plan = _tiny(fingerprint_dataset(hippo))
    config = plan.train_config(cache_cases=2)
    assert config.max_steps == 20 and config.patience == 0 and config.preprocessing == plan.preprocessing()
    assert TrainConfig.from_json(config.to_json()) == config
    reg = ModelRegistry(tmp_path / "reg")
    result = run_generator(fine_tune(config, dataset=hippo, registry=reg, from_version="scratch"))
    _, card = reg.load(result.version)
    assert card.spec.to_dict() == plan.model_spec()
    assert card.preprocessing == plan.preprocessing()
    assert card.training["patch_size"] == plan.patch_size and card.training["config"]["batch_size"] == 2
    assert result.steps == 20
    # a fine-tune of the planned model takes the plan's data settings and per-case rate; another network not
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.planning import finetune_settings

    settings = finetune_settings(plan.to_dict(), reg.get(result.version).path)
    assert settings["lr"] == plan.finetune_lr and settings["patch_size"] == plan.patch_size
    assert settings["batch_size"] == plan.batch_size and settings["augment"] == plan.augment
    assert finetune_settings(plan.to_dict(), BUNDLED_MODELS / "default") == {}
    assert finetune_settings(None, reg.get(result.version).path) == {}


def test_old_train_configs_still_load_and_bad_preprocessing_is_refused():
    old = TrainConfig().to_dict()
    del old["preprocessing"]
    assert TrainConfig.from_dict(old).preprocessing is None
    with pytest.raises(SegLoopError, match="preprocessing"):
        TrainConfig(preprocessing={"mode": "pet"})


def test_calibration_measures_steps_and_refits_the_schedule(hippo):
    plan = _tiny(fingerprint_dataset(hippo)).with_changes(minutes=2)
    measured = calibrate_plan(plan, hippo, steps=2)
    assert measured.step_time_source == "calibrated" and measured.seconds_per_step > 0
    assert measured.calibration_key() == plan.calibration_key()
    assert measured.max_steps * measured.seconds_per_step <= 2 * 60  # the schedule fits the budget
    longer = measured.with_changes(minutes=4)  # same network: the measurement is kept
    assert longer.step_time_source == "calibrated" and longer.seconds_per_step == measured.seconds_per_step
    assert longer.max_steps > measured.max_steps
    wider = measured.with_changes(base_width=8)  # another network: an estimate again
    assert wider.step_time_source == "estimate"


def test_plan_first_model_is_the_one_call(hippo):
    plan = plan_first_model(hippo, "MR", minutes=3, device="cpu", calibrate=False, threads=1)
    assert plan.dims == 3 and plan.minutes == 3 and plan.step_time_source == "estimate"
    assert plan.train_config().max_minutes == 3


def test_a_time_budget_gives_a_fine_tune_a_complete_schedule(hippo):
    config = TrainConfig(max_steps=8, steps_per_epoch=4, batch_size=2, num_threads=1, cache_cases=2,
                         model_spec={"base_width": 4, "depth": 2}, validate_at_start=False, val_max_cases=1)
    fitted = fit_config_to_minutes(config, hippo, 1.0, from_version="scratch", steps=2)
    assert fitted.max_minutes == 1.0 and fitted.max_steps >= 20
    assert fitted.total_steps == fitted.max_steps and fitted.steps_per_epoch <= fitted.max_steps


def test_on_a_cpu_the_patch_holds_the_structure_not_the_whole_slice():
    from unet_engine.planning import rules

    fp = _fp((10.0, 1.5, 1.5), (10, 256, 216))
    for c, ext in zip(fp.cases, ([9, 64, 68], [7, 51, 65], [11, 69, 75], [10, 60, 70])):
        c.fg_extent = ext
    assert fp.fg_extent_at((None, 1.5, 1.5)) == tuple(int(np.ceil(v)) for v in np.percentile(
        [[9, 64, 68], [7, 51, 65], [11, 69, 75], [10, 60, 70]], 90, axis=0))
    plan = make_plan(fp, device="cpu", steps=100, threads=1)
    ext = fp.fg_extent_at((None, 1.5, 1.5))[1:]
    m = 2**plan.depth
    assert all(p >= rules.OBJECT_CONTEXT * e and p - m < rules.OBJECT_CONTEXT * e for p, e in zip(plan.patch_size, ext))
    assert "labelled structure" in plan.reasons["patch_size"]
    cpu = cost.device_budget("cpu", 1)
    gpu = cost.DeviceBudget("cuda", "cuda:0", 0, 40 << 30, 8e12, cost.GPU_STEP_TARGET_S, cost.GPU_STEP_MAX_S)
    assert rules.start_patch([256, 216], list(ext), 2, gpu) == ([256, 216], False)  # nnU-Net: the median slice
    assert rules.start_patch([256, 216], list(ext), 2, cpu)[1] is True
    assert rules.start_patch([36, 50, 36], [26, 43, 22], 3, cpu) == ([36, 50, 33], True)


def test_finetune_config_is_the_per_case_fine_tune(hippo):
    plan = _tiny(fingerprint_dataset(hippo))
    assert plan.finetune_steps >= 20 and plan.finetune_lr == plan.lr
    assert plan.finetune_steps == max(20, int(100.0 // plan.seconds_per_step))
    cfg = plan.finetune_config(seed=3)
    assert cfg.max_steps == plan.finetune_steps and cfg.lr == plan.finetune_lr and cfg.seed == 3
    assert cfg.replay_ratio == 0.5 and cfg.patch_size == plan.patch_size and cfg.batch_size == plan.batch_size
    assert "Each corrected case" in plan.summary_lines()[-1]
