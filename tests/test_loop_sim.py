"""``segloop loop-sim`` on tiny budgets: runs end to end, writes the CSV / PNG / summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from unet_engine.cli import main
from unet_engine.loop_sim_report import csv_columns

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
