"""``segloop dataset``, ``segloop train`` and ``segloop models`` from the command line."""

from __future__ import annotations

import json

import pytest

from tests.train_helpers import HIPPO, tiny_config
from unet_engine.cli.main import main


def test_dataset_commands(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert main(["dataset", "create", str(ds), "--labels", "1=anterior,2=posterior"]) == 0
    img, lab = HIPPO / "imagesTr" / "hippocampus_001.nii.gz", HIPPO / "labelsTr" / "hippocampus_001.nii.gz"
    assert main(["dataset", "add", str(ds), "--image", str(img), "--label", str(lab), "--reviewer", "RT",
                 "--model-version", "v0001"]) == 0
    assert "added hippocampus_001 (train)" in capsys.readouterr().out
    assert main(["dataset", "add", str(ds), "--image", str(img), "--label", str(lab)]) == 2
    assert "already in the dataset" in capsys.readouterr().err
    wrong = HIPPO / "labelsTr" / "hippocampus_003.nii.gz"
    assert main(["dataset", "add", str(ds), "--image", str(img), "--label", str(wrong)]) == 2
    assert "does not line up with the scan" in capsys.readouterr().err
    assert main(["dataset", "import-msd", str(HIPPO), str(ds), "--limit", "4"]) == 0
    capsys.readouterr()
    assert main(["dataset", "list", str(ds), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed["cases"]][:2] == ["hippocampus_001", "hippocampus_003"]
    assert listed["cases"][0]["reviewer"] == "RT" and len(listed["cases"]) == 4
    assert main(["dataset", "remove", str(ds), "hippocampus_148"]) == 0
    assert main(["dataset", "list", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "3 cases" in out and "hippocampus_148" not in out.split("\n", 2)[-1]
    assert main(["dataset", "export-nnunet", str(ds), str(tmp_path / "raw"), "--id", "7", "--name", "Hip"]) == 0
    assert (tmp_path / "raw" / "Dataset007_Hip" / "imagesTr" / "hippocampus_001_0000.nii.gz").is_file()


def test_train_and_models_commands(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert main(["dataset", "import-msd", str(HIPPO), str(ds), "--labels", "1=anterior,2=posterior"]) == 0
    cfg = tiny_config(steps_per_epoch=2, val_max_cases=2)  # below 2 validation cases: "no validation yet"
    assert main(["train", "--dataset", str(ds), "--from", "scratch", "--steps", "4", "--config", cfg.to_json(),
                 "--seed", "3", "--promote"]) == 0
    captured = capsys.readouterr()
    assert "new model version v0001" in captured.out and "now active" in captured.out
    assert "train [" in captured.err and "val Dice" in captured.err
    assert main(["train", "--dataset", str(ds), "--steps", "2", "--config", cfg.to_json(), "--name", "second"]) == 0
    assert "parent v0001" in capsys.readouterr().out  # default start: the active version
    assert main(["models", "list", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["active"], v["parent"]) for v in versions] == [("v0001", True, None),
                                                                            ("v0002", False, "v0001")]
    assert versions[0]["config"]["seed"] == 3 and versions[1]["name"] == "second"
    assert main(["models", "promote", "v0002"]) == 0
    assert main(["models", "compare", "v0001", "v0002"]) == 0
    assert "val_mean_dice" in capsys.readouterr().out
    assert main(["models", "delete", "v0002"]) == 2
    assert "active model" in capsys.readouterr().err
    assert main(["models", "rollback"]) == 0
    assert "v0001 is now the active model" in capsys.readouterr().out
    assert main(["models", "delete", "v0002"]) == 0
    assert main(["models", "rollback"]) == 2
    assert main(["models", "list"]) == 0
    assert "* v0001" in capsys.readouterr().out
    assert main(["train", "--dataset", str(ds), "--resume"]) == 2
    assert "no saved training state" in capsys.readouterr().err


def test_train_config_errors_are_one_line(tmp_path, capsys):
    ds = tmp_path / "ds"
    main(["dataset", "import-msd", str(HIPPO), str(ds), "--labels", "1=a,2=b", "--limit", "3"])
    capsys.readouterr()
    assert main(["train", "--dataset", str(ds), "--config", '{"lr": -1}']) == 2
    assert "lr must be > 0" in capsys.readouterr().err
    assert main(["train", "--dataset", str(tmp_path / "missing")]) == 2
    assert "not a SegLoop retraining dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", str(ds), "--epochs", "2", "--steps", "3"])
