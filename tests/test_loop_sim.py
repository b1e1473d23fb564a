"""``segloop loop-sim`` on tiny budgets: runs end to end, writes the CSV / PNG / summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from unet_engine.cli.main import main
from unet_engine.experiments.loop_sim_report import csv_columns

DATA = Path(__file__).parent / "data" / "hippocampus"  # 8 real MSD Task04 cases (see tests/data/README.md)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(out: Path, *extra: str) -> int:
    return main(["loop-sim", "--data", str(DATA), "--out", str(out), "--initial", "2", "--rounds", "3", "--holdout", "1",
                 "--initial-steps", "2", "--steps-per-round", "1", "--batch-size", "2", "--labels",
                 "1=anterior,2=posterior", "--reference", "none", "--spec",
                 '{"dims": 2, "in_channels": 1, "base_width": 4, "depth": 2}', "--threads", "1", *extra])


def test_loop_sim_three_rounds_writes_csv_png_summary(tmp_path):
    out = tmp_path / "sim"
    assert _run(out, "--compare") == 0
    with (out / "loop_sim.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == csv_columns(["anterior", "posterior"])
        rows = list(reader)
    for mode in ("finetune", "finetune-noreplay", "scratch"):
        mine = [r for r in rows if r["mode"] == mode]
        assert [int(r["round"]) for r in mine] == [0, 1, 2, 3]
        assert [int(r["corrected_cases"]) for r in mine] == [2, 3, 4, 5]
        for r in mine[1:]:
            assert int(r["voxels_to_correct"]) == int(r["voxels_to_correct_anterior"]) + int(
                r["voxels_to_correct_posterior"]) - _both(r)
            assert 0.0 <= float(r["holdout_dice_anterior"]) <= 1.0
            assert float(r["round_s"]) > 0 and int(r["steps"]) == 1
            assert int(r["surface_to_redraw"]) >= 0
            assert 0 <= int(r["voxels_beyond_tolerance"]) <= int(r["voxels_to_correct"])
        for r in mine:  # the fixed held-out set's effort, round 0 included
            assert float(r["holdout_voxels_to_correct"]) >= 0 and float(r["holdout_surface_to_redraw"]) >= 0
            assert 0 <= float(r["holdout_voxels_beyond_tolerance"]) <= float(r["holdout_voxels_to_correct"])
    png = (out / "loop_sim.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summary"]) == {"finetune", "finetune-noreplay", "scratch"}
    fine = summary["summary"]["finetune"]
    start = float([r for r in rows if r["mode"] == "finetune"][0]["holdout_voxels_to_correct"])
    assert fine["holdout_effort_start"] == pytest.approx(start, rel=1e-5)
    if start:
        assert fine["holdout_effort_ratio_end_over_start"] == pytest.approx(fine["holdout_effort_end"] / start)
    assert fine["holdout_outline_start"] == pytest.approx(
        float([r for r in rows if r["mode"] == "finetune"][0]["holdout_surface_to_redraw"]), rel=1e-5)
    assert fine["holdout_beyond_tolerance_start"] == pytest.approx(
        float([r for r in rows if r["mode"] == "finetune"][0]["holdout_voxels_beyond_tolerance"]), rel=1e-5)
    assert fine["beyond_tolerance_first_mean"] is not None
    cases = summary["cases"]
    assert len(cases["initial"]) == 2 and len(cases["stream"]) == 3 and len(cases["holdout"]) == 1
    assert not set(cases["holdout"]) & set(cases["initial"] + cases["stream"])
    assert not (out / "work").exists()  # temporary datasets/registries removed


def _both(row: dict) -> int:
    """Voxels counted under both labels (predicted one label, reference the other): can't be derived, so bound it."""
    total, a, p = int(row["voxels_to_correct"]), int(row["voxels_to_correct_anterior"]), int(row["voxels_to_correct_posterior"])
    both = a + p - total
    assert 0 <= both <= min(a, p)
    return both


def test_loop_sim_is_deterministic(tmp_path):
    for name in ("a", "b"):
        assert _run(tmp_path / name, "--mode", "finetune") == 0
    cols = ["voxels_to_correct", "holdout_dice_anterior", "holdout_dice_posterior", "case_id"]

    def read(name: str) -> list[list[str]]:
        with (tmp_path / name / "loop_sim.csv").open(newline="") as fh:
            return [[r[c] for c in cols] for r in csv.DictReader(fh)]

    assert read("a") == read("b")


def test_loop_sim_runs_a_3d_model_on_patches(tmp_path):
    out = tmp_path / "sim3d"
    assert main(["loop-sim", "--data", str(DATA), "--out", str(out), "--initial", "2", "--rounds", "1", "--holdout", "1",
                 "--initial-steps", "2", "--steps-per-round", "1", "--batch-size", "1", "--patch-size", "16,16,16",
                 "--labels", "1=anterior,2=posterior", "--reference", "none", "--spec",
                 '{"dims": 3, "in_channels": 1, "base_width": 4, "depth": 2}', "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["patch_size"] == [16, 16, 16]
    assert summary["config"]["augment"] == {"flip_axes": [2]}  # left-right only in [k, j, i]
    with (out / "loop_sim.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in rows] == [0, 1] and int(rows[1]["voxels_to_correct"]) > 0


def test_loop_sim_refuses_a_bad_patch_size(tmp_path, capsys):
    assert _run(tmp_path / "bad", "--patch-size", "16,x") != 0
    assert "--patch-size" in capsys.readouterr().err


# ----- planned networks, grouped held-out cases, honest Dice (unet_engine.planning) --------------------


def test_group_pattern_keeps_a_group_on_one_side_of_the_held_out_split():
    from unet_engine.experiments.loop_sim import LoopSimConfig, group_of, list_cases, split_cases

    cases = list_cases(DATA)
    pattern = r"hippocampus_\d\d"  # 001/003 and 148/149 share a group
    for seed in range(6):
        cfg = LoopSimConfig(data=str(DATA), labels={1: "anterior", 2: "posterior"}, initial=1, rounds=1, holdout=2,
                            seed=seed, group_pattern=pattern)
        initial, stream, hold = split_cases(cases, cfg)
        held = {group_of(c.id, pattern) for c in hold}
        assert len(hold) >= 2
        assert not held & {group_of(c.id, pattern) for c in initial + stream}
        assert all(c.id in {h.id for h in hold} for c in cases if group_of(c.id, pattern) in held)


def test_held_out_dice_leaves_out_labels_absent_from_both(tmp_path, monkeypatch):
    import math
    from types import SimpleNamespace

    import numpy as np

    import unet_engine.experiments.loop_sim as ls
    from unet_engine.volume import Volume

    cfg = ls.LoopSimConfig(data=str(DATA), labels={1: "anterior", 2: "posterior"}, initial=1, rounds=1, holdout=2)
    sim = ls.LoopSimulation(cfg, tmp_path / "sim")
    ref_a, ref_b = np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), np.uint8)
    ref_a[0, :2] = 1  # label 2 absent from case a's reference and prediction: n/a there, not 1.0
    ref_b[1] = 2
    pred_a, pred_b = ref_a.copy(), np.zeros_like(ref_b)  # case b: label 2 missed (0), label 1 absent (n/a)
    pred_a[0, 1] = 0  # label 1 on case a: Dice 2*4 / (4 + 8)
    preds = {id(ref_a): pred_a, id(ref_b): pred_b}
    vols = [Volume(np.zeros((2, 4, 4), np.float32)) for _ in range(2)]
    monkeypatch.setattr(sim, "holdout_data", lambda: [(vols[0], ref_a), (vols[1], ref_b)])
    refs = iter([ref_a, ref_b])

    def fake_predict(model, card, vol, device):
        if False:
            yield
        return SimpleNamespace(labels=preds[id(next(refs))])

    monkeypatch.setattr(ls, "predict_volume", fake_predict)
    score = sim.score(None, None)
    assert score.per_label["anterior"] == pytest.approx(2 * 4 / 12)  # case b does not count
    assert score.per_label["posterior"] == 0.0  # case a does not count
    assert score.mean == pytest.approx((2 * 4 / 12 + 0.0) / 2) and not math.isnan(score.mean)


def test_loop_sim_plans_the_network_from_the_starting_cases(tmp_path):
    out = tmp_path / "planned"
    assert main(["loop-sim", "--data", str(DATA), "--out", str(out), "--initial", "2", "--rounds", "1", "--holdout",
                 "2", "--initial-steps", "2", "--steps-per-round", "1", "--labels", "1=anterior,2=posterior",
                 "--reference", "none", "--plan", "auto", "--group-pattern", r"hippocampus_\d\d",
                 "--spec", '{"base_width": 4, "depth": 2}', "--patch-size", "16,16,16", "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = summary["config"]
    assert cfg["plan"] == "auto" and cfg["planned"]["dims"] == 3  # 1 mm isotropic small volumes: 3D
    assert cfg["model_spec"]["base_width"] == 4 and cfg["model_spec"]["num_classes"] == 3
    assert cfg["preprocessing"]["mode"] == "mr" and cfg["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0]
    assert cfg["batch_size"] == cfg["planned"]["batch_size"] and cfg["patch_size"] == [16, 16, 16]
    assert any("3D U-Net" in line for line in cfg["plan_summary"])
    fp_cases = {c["id"] for c in cfg["planned"]["fingerprint"]["cases"]}
    assert fp_cases == set(summary["cases"]["initial"])  # planned from the starting cases only


def test_loop_sim_takes_labels_modality_and_plan_from_a_project(tmp_path):
    from unet_engine.planning import make_plan
    from unet_engine.projects import ProjectStore

    store = ProjectStore()
    project = store.create("Hippo sim", modality="MR", labels={1: "anterior", 2: "posterior"})
    ds = project.dataset()
    from unet_engine.io.volume_io import read_mask, read_volume

    image = read_volume(DATA / "imagesTr" / "hippocampus_001.nii.gz")
    ds.add_case(image, read_mask(DATA / "labelsTr" / "hippocampus_001.nii.gz", image))
    from unet_engine.planning import fingerprint_dataset

    plan = make_plan(fingerprint_dataset(ds, project.modality), device="cpu", steps=20, threads=1,
                     overrides={"dims": 2, "context_slices": 0, "base_width": 4, "depth": 2, "batch_size": 2})
    project.save_plan(plan.to_dict())
    out = tmp_path / "proj"
    assert main(["loop-sim", "--data", str(DATA), "--out", str(out), "--initial", "2", "--rounds", "1", "--holdout",
                 "1", "--initial-steps", "2", "--steps-per-round", "1", "--reference", "none", "--project",
                 "hippo sim", "--threads", "1"]) == 0
    cfg = json.loads((out / "summary.json").read_text())["config"]
    assert cfg["labels"] == {"1": "anterior", "2": "posterior"} and cfg["modality"] == "MR"
    assert cfg["model_spec"] == plan.model_spec() and cfg["planned"]["base_width"] == 4


def test_the_plan_sets_the_per_round_budget_unless_given(tmp_path):
    from unet_engine.errors import SegLoopError
    from unet_engine.experiments.loop_sim import LoopSimConfig, LoopSimulation

    with pytest.raises(SegLoopError, match="steps-per-round"):
        LoopSimConfig(data=str(DATA), labels={1: "anterior", 2: "posterior"}, steps_per_round=None).validate()
    cfg = LoopSimConfig(data=str(DATA), labels={1: "anterior", 2: "posterior"}, initial=2, rounds=1, holdout=1,
                        initial_steps=2, steps_per_round=None, lr_round=None, plan="auto", threads=1,
                        plan_overrides={"base_width": 4, "depth": 2, "patch_size": [16, 16, 16], "batch_size": 1})
    sim = LoopSimulation(cfg, tmp_path / "sim")
    sim._initial_workspace()
    assert cfg.steps_per_round == cfg.planned["finetune_steps"] and cfg.lr_round == cfg.planned["finetune_lr"]
    assert cfg.batch_size == 1 and cfg.model_spec["dims"] == 3


def test_a_reference_model_of_other_labels_is_not_scored(capsys):
    """The bundled hippocampus model is no reference for a spleen simulation: no reference line."""
    import argparse

    from unet_engine.cli.commands.loop_sim import build_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    common = ["loop-sim", "--data", str(DATA), "--out", "unused", "--reference", "default"]
    same = build_config(parser.parse_args(common))
    assert same.reference is not None and same.labels == {1: "anterior", 2: "posterior"}
    other = build_config(parser.parse_args(common + ["--labels", "1=spleen"]))
    assert other.reference is None and other.labels == {1: "spleen"}
    assert "segments other labels" in capsys.readouterr().err
