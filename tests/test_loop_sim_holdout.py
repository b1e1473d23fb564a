"""An explicit held-out set (``--holdout-from``) is honoured fully or refused, never silently replaced."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from unet_engine.errors import SegLoopError
from unet_engine.experiments.loop_sim import LoopSimConfig, list_cases, split_cases

DATA = Path(__file__).parent / "data" / "hippocampus"  # 8 real MSD Task04 cases


def _cfg(**kw) -> LoopSimConfig:
    base = dict(data=str(DATA), labels={1: "anterior", 2: "posterior"}, initial=1, rounds=1, holdout=2, seed=0)
    base.update(kw)
    return LoopSimConfig(**base)


def test_requested_held_out_cases_are_the_ones_scored():
    cases = list_cases(DATA)
    wanted = [cases[0].id, cases[3].id]
    initial, stream, hold = split_cases(cases, _cfg(holdout_ids=wanted))
    assert sorted(c.id for c in hold) == sorted(wanted)
    assert not {c.id for c in initial + stream} & set(wanted)


def test_requested_held_out_cases_absent_from_the_data_are_an_error():
    cases = list_cases(DATA)
    with pytest.raises(SegLoopError, match="not in the data: other_001, other_002"):
        split_cases(cases, _cfg(holdout_ids=["other_001", "other_002"]))


def test_a_partly_absent_held_out_set_is_an_error_naming_the_missing():
    cases = list_cases(DATA)
    with pytest.raises(SegLoopError) as err:
        split_cases(cases, _cfg(holdout_ids=[cases[0].id, "other_007"]))
    assert "1 of the 2" in str(err.value) and "other_007" in str(err.value)
    assert cases[0].id not in str(err.value).split("in the data:")[1]


def test_an_empty_requested_held_out_set_is_an_error():
    with pytest.raises(SegLoopError, match="empty"):
        split_cases(list_cases(DATA), _cfg(holdout_ids=[]))


def test_reference_val_ids_absent_from_the_data_fall_back_with_a_warning(monkeypatch, caplog):
    import unet_engine.experiments.loop_sim as ls

    monkeypatch.setattr(ls, "reference_val_ids", lambda ref: ["other_001", "other_002"])
    cases = list_cases(DATA)
    with caplog.at_level(logging.WARNING, logger="unet_engine.experiments.loop_sim"):
        _, _, hold = split_cases(cases, _cfg(reference="some/ref"))
    assert len(hold) == 2 and all(c.id in {x.id for x in cases} for c in hold)
    assert any("other_001" in r.getMessage() and "not in the data" in r.getMessage() for r in caplog.records)


def test_cli_holdout_from_a_dataset_whose_cases_are_not_in_the_data_exits_2(tmp_path, capsys):
    from unet_engine.cli.main import main
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.io.volume_io import read_volume

    ds = RetrainingDataset.create(tmp_path / "other", {1: "anterior", 2: "posterior"})
    for n, name in enumerate(["hippocampus_001", "hippocampus_003", "hippocampus_148"]):
        image = read_volume(DATA / "imagesTr" / f"{name}.nii.gz")
        label = read_volume(DATA / "labelsTr" / f"{name}.nii.gz").array
        ds.add_case(image, label, case_id=f"elsewhere_{n}")
    assert ds.val_cases()
    out = tmp_path / "sim"
    rc = main(["loop-sim", "--data", str(DATA), "--out", str(out), "--initial", "2", "--rounds", "3", "--holdout", "1",
               "--initial-steps", "2", "--steps-per-round", "1", "--batch-size", "2", "--labels",
               "1=anterior,2=posterior", "--reference", "none", "--spec",
               '{"dims": 2, "in_channels": 1, "base_width": 4, "depth": 2}', "--threads", "1",
               "--holdout-from", str(ds.folder)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "not in the data: elsewhere_" in err and "Traceback" not in err
    assert not (out / "summary.json").exists()
