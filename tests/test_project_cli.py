"""``segloop project ...`` and ``--project NAME`` on dataset/train/predict/eval/models.

Real engine, real fixtures (MSD hippocampus MR cases, an MSD spleen CT crop), tiny step
counts on one torch thread. A module fixture trains one project's first model through the
CLI; tests that need a trained project start from a copy of that SegLoop home.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_helpers import DATA, HIPPO, ROOT, python_env
from unet_engine.cli.main import main
from unet_engine.paths import BUNDLED_MODELS

CT_IMAGE, CT_LABEL = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz", DATA / "io" / "ct_spleen_nifti" / "label.nii.gz"
CASES = ("hippocampus_001", "hippocampus_003", "hippocampus_148", "hippocampus_149")
PROJECT = "Hippo Test"
FAST = ["--no-calibrate", "--threads", "1", "--seed", "0"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def image(case: str) -> str:
    return str(HIPPO / "imagesTr" / f"{case}.nii.gz")


def label(case: str) -> str:
    return str(HIPPO / "labelsTr" / f"{case}.nii.gz")


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``segloop ARGS``; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def fails(command: str, *args: str) -> str:
    """Run a command that must fail with one error line and exit code 2; returns the line."""
    rc, _, err = cli(*args)
    line = err.strip()
    assert rc == 2, (args, err)
    assert line.startswith(f"segloop {command}: error:") and "\n" not in line and "Traceback" not in err, err
    return line


def add_cases(project: str, cases: tuple[str, ...]) -> None:
    for case in cases:
        rc, out, err = cli("dataset", "add", "--project", project, "--image", image(case), "--label", label(case))
        assert rc == 0, err


def ct_crop(path: Path) -> Path:
    """4 x 32 x 32 real voxels of the spleen CT around air (exact geometry), for a quick prediction."""
    from unet_engine.io.volume_io import read_volume, write_volume
    from unet_engine.volume import Volume

    ct = read_volume(CT_IMAGE)
    k, j, i = 16, 33, 102
    crop = Volume(ct.array[k:k + 4, j:j + 32, i:i + 32].copy(), ct.spacing, ct.voxel_to_world((k, j, i)),
                  ct.direction.copy(), ct.modality)
    return write_volume(crop, path)


def show(name: str) -> dict:
    rc, out, err = cli("project", "show", name, "--json")
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory) -> dict:
    """A SegLoop home whose project PROJECT (MR, 4 cases) got its first model through the CLI."""
    home = tmp_path_factory.mktemp("trained_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEGLOOP_HOME", str(home))
        assert cli("project", "create", PROJECT, "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
        add_cases(PROJECT, CASES[:2])
        too_few = fails("train", "train", "--project", PROJECT, "--minutes", "1", *FAST)
        add_cases(PROJECT, CASES[2:])
        first = cli("train", "--project", PROJECT, "--minutes", "1", "--steps", "2", *FAST)
        second = cli("train", "--project", PROJECT.lower(), "--steps", "2", *FAST)
    return {"home": home, "too_few": too_few, "first": first, "second": second}


@pytest.fixture
def trained(trained_home, _segloop_home) -> Path:
    """This test's SEGLOOP_HOME holding a copy of the trained home's projects."""
    shutil.copytree(trained_home["home"] / "projects", _segloop_home / "projects")
    return _segloop_home


# ----- project create / list / show / delete / add-labels ---------------------------------------


def test_create_list_show_add_labels_and_delete(_segloop_home):
    rc, out, _ = cli("project", "create", "Cardiac MR", "--modality", "MR",
                     "--labels", "1=right ventricle,2=myocardium,3=left ventricle")
    assert rc == 0 and "created project 'Cardiac MR' [MR]" in out and "segloop train --project 'Cardiac MR'" in out
    folder = _segloop_home / "projects" / "Cardiac MR"
    assert (folder / "project.json").is_file() and (folder / "dataset" / "dataset.json").is_file()

    rc, out, _ = cli("project", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    row = rows["Cardiac MR"]
    assert row["modality"] == "MR" and row["labels"] == {"1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
    assert (row["cases"], row["schema_version"], row["active_version"], row["error"]) == (0, 1, None, None)
    assert row["model"] == "none yet (needs 3 more cases)"
    assert rows["Hippocampus (MRI)"]["model"] == "bundled start model"  # made on the first start
    rc, text, _ = cli("project", "list")
    assert "Cardiac MR  [MR]" in text and "model: none yet" in text

    rc, out, _ = cli("project", "add-labels", "cardiac mr", "--labels", "4=aorta")
    assert rc == 0 and "label schema v2" in out
    info = show("CARDIAC MR")
    assert info["schema_version"] == 2 and info["labels"]["4"] == "aorta"
    assert [s["version"] for s in info["label_schemas"]] == [1, 2] and "aorta" in info["label_schemas"][1]["change"]
    assert (info["cases"], info["train"], info["val"], info["versions"], info["plan"]) == (0, 0, 0, [], None)
    assert info["folder"] == str(folder)
    rc, text, _ = cli("project", "show", "Cardiac MR")
    assert "labels (schema v2)" in text and "plan: none yet" in text
    fails("project", "project", "add-labels", "Cardiac MR", "--labels", "1=left atrium")  # never renamed

    err = fails("project", "project", "delete", "Cardiac MR")  # no terminal, no --yes
    assert "--yes" in err and folder.is_dir()
    rc, out, _ = cli("project", "delete", "cardiac mr", "--yes")
    trash = Path(out.split(" to ", 1)[1].split(" (move it back")[0])
    assert rc == 0 and not folder.exists() and (trash / "project.json").is_file()
    assert trash.parent == _segloop_home / "projects" / ".trash"
    assert "no project named 'Cardiac MR'" in fails("project", "project", "show", "Cardiac MR")


def test_delete_asks_on_a_terminal(_segloop_home, monkeypatch):
    assert cli("project", "create", "Spleen CT", "--modality", "CT", "--labels", "1=spleen")[0] == 0

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    rc, out, _ = cli("project", "delete", "Spleen CT")
    assert rc == 1 and "not deleted" in out and (_segloop_home / "projects" / "Spleen CT").is_dir()
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    rc, out, _ = cli("project", "delete", "Spleen CT")
    assert rc == 0 and "Move project 'Spleen CT' (0 cases" in out and not (_segloop_home / "projects" / "Spleen CT").exists()


def test_bad_names_duplicates_and_missing_projects(_segloop_home):
    assert cli("project", "create", "Spleen CT", "--modality", "CT", "--labels", "1=spleen")[0] == 0
    assert "already exists" in fails("project", "project", "create", "Spleen CT", "--modality", "CT", "--labels", "1=a")
    assert "'Spleen CT' already exists" in fails("project", "project", "create", "SPLEEN ct", "--modality", "CT",
                                                  "--labels", "1=a")
    assert "cannot hold" in fails("project", "project", "create", "liver/ct", "--modality", "CT", "--labels", "1=a")
    assert "reserved" in fails("project", "project", "create", "CON", "--modality", "CT", "--labels", "1=a")
    assert "unknown modality" in fails("project", "project", "create", "PET", "--modality", "PET", "--labels", "1=a")
    assert "needs labels" in fails("project", "project", "create", "No labels", "--modality", "CT")
    assert "no project named 'Nope'" in fails("project", "project", "delete", "Nope", "--yes")
    assert "no project named" in fails("dataset", "dataset", "list", "--project", "Nope")
    assert sorted(p.name for p in (_segloop_home / "projects").iterdir() if not p.name.startswith(".")) == [
        "Hippocampus (MRI)", "Spleen CT"]


def test_create_from_a_model(_segloop_home):
    rc, out, _ = cli("project", "create", "Hippo bundled", "--modality", "MR", "--from-model", "default")
    assert rc == 0 and "1=anterior, 2=posterior" in out and "model: bundled start model" in out
    rc, out, _ = cli("project", "create", "Hippo import", "--modality", "MR", "--from-model", str(BUNDLED_MODELS / "default"))
    assert rc == 0 and "model: v0001 (active)" in out
    info = show("Hippo import")
    assert info["start_model"] == "imported model v0001" and info["versions"][0]["active"]
    assert "anterior" in fails("project", "project", "create", "Spleen", "--modality", "CT", "--labels", "1=spleen",
                               "--from-model", "default")


# ----- the dataset of a project --------------------------------------------------------------------


def test_dataset_add_refuses_unknown_labels_and_other_modalities(_segloop_home):
    assert cli("project", "create", "Spleen CT", "--modality", "CT", "--labels", "1=spleen")[0] == 0
    err = fails("dataset", "dataset", "add", "--project", "Spleen CT", "--image", image(CASES[0]), "--label", label(CASES[0]))
    assert "label value(s) [2]" in err and "segloop project add-labels 'Spleen CT' --labels \"2=NAME\"" in err
    rc, out, _ = cli("dataset", "list", "--project", "Spleen CT", "--json")
    assert json.loads(out)["cases"] == []  # nothing added, nothing remapped
    assert cli("project", "add-labels", "Spleen CT", "--labels", "2=other")[0] == 0
    err = fails("dataset", "dataset", "add", "--project", "Spleen CT", "--image", image(CASES[0]), "--label", label(CASES[0]))
    assert "not in CT Hounsfield units" in err and "project 'Spleen CT' is for CT" in err and "--allow-modality-mismatch" in err
    rc, out, err = cli("dataset", "add", "--project", "spleen ct", "--image", str(CT_IMAGE), "--label", str(CT_LABEL))
    assert rc == 0 and "to project 'Spleen CT'" in out, err

    assert cli("project", "create", "Hippo", "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
    err = fails("dataset", "dataset", "add", "--project", "Hippo", "--image", str(CT_IMAGE), "--label", str(CT_LABEL))
    assert "look like CT Hounsfield units" in err and "project 'Hippo' is for MR" in err
    rc, out, err = cli("dataset", "add", "--project", "Hippo", "--image", str(CT_IMAGE), "--label", str(CT_LABEL),
                       "--allow-modality-mismatch")
    assert rc == 0, err
    rc, out, _ = cli("dataset", "list", "--project", "Hippo")
    assert rc == 0 and out.startswith("project 'Hippo': 1 cases")
    case_id = out.splitlines()[1].split()[0]
    assert cli("dataset", "remove", "--project", "Hippo", case_id)[0] == 0
    assert CT_IMAGE.is_file() and CT_LABEL.is_file()  # sources untouched


def test_import_msd_into_a_project_checks_labels_and_modality(_segloop_home, tmp_path):
    src = tmp_path / "Task"
    shutil.copytree(HIPPO, src)
    (src / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "anterior", "2": "posterior"},
                                                  "modality": {"0": "MRI"}}))
    assert cli("project", "create", "Spleen CT", "--modality", "CT", "--labels", "1=spleen")[0] == 0
    assert "[2]" in fails("dataset", "dataset", "import-msd", str(src), "--project", "Spleen CT", "--limit", "2")
    assert cli("project", "create", "Hippo", "--modality", "MR", "--labels", "1=head,2=tail")[0] == 0
    assert "never remaps" in fails("dataset", "dataset", "import-msd", str(src), "--project", "Hippo", "--limit", "2")
    assert cli("project", "create", "Hippo CT", "--modality", "CT", "--labels", "1=anterior,2=posterior")[0] == 0
    assert "MRI" in fails("dataset", "dataset", "import-msd", str(src), "--project", "Hippo CT", "--limit", "2")
    assert cli("project", "create", "Hippo MR", "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
    rc, out, err = cli("dataset", "import-msd", str(src), "--project", "Hippo MR", "--limit", "3")
    assert rc == 0 and show("Hippo MR")["cases"] == 3, err


def test_project_or_folder_never_both(_segloop_home, tmp_path):
    assert cli("project", "create", "Hippo", "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
    assert cli("dataset", "create", str(tmp_path / "ds"), "--labels", "1=a")[0] == 0
    assert "not both" in fails("dataset", "dataset", "list", str(tmp_path / "ds"), "--project", "Hippo")
    assert "give a dataset folder or --project NAME" in fails("dataset", "dataset", "list")
    assert "not both" in fails("train", "train", "--dataset", str(tmp_path / "ds"), "--project", "Hippo")
    assert "give --dataset DIR or --project NAME" in fails("train", "train")
    assert "not both" in fails("train", "train", "--project", "Hippo", "--registry", str(tmp_path / "r"))
    assert "not both" in fails("predict", "predict", "--model", "default", "--project", "Hippo", image(CASES[0]),
                               str(tmp_path / "o.nii.gz"))
    assert "not both" in fails("models", "models", "--registry", str(tmp_path / "r"), "list", "--project", "Hippo")
    assert "not both" in fails("eval", "eval", "--model", "default", "--project", "Hippo")


# ----- a project without a model ------------------------------------------------------------------


def test_predict_eval_and_train_without_a_model(_segloop_home, tmp_path):
    assert cli("project", "create", "Hippo", "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
    add_cases("Hippo", CASES[:1])
    err = fails("predict", "predict", "--project", "hippo", image(CASES[1]), str(tmp_path / "o.nii.gz"))
    assert "project 'Hippo' has no model yet: add 2 more corrected cases" in err
    assert "segloop train --project Hippo --minutes M" in err and not (tmp_path / "o.nii.gz").exists()
    assert "has no model yet" in fails("eval", "eval", "--project", "Hippo")
    assert "needs at least 3: add 2 more" in fails("train", "train", "--project", "Hippo", "--minutes", "1")
    add_cases("Hippo", CASES[1:3])
    assert "give --minutes M" in fails("train", "train", "--project", "Hippo", "--steps", "2")
    assert "did not start from the bundled model" in fails("train", "train", "--project", "Hippo", "--from", "default")
    rc, out, err = cli("train", "--project", "Hippo", "--minutes", "5", "--plan-only", *FAST)
    assert rc == 0 and "planning its first model from its 3 cases" in out and "Model:" in out and "why:" in out, err
    assert show("Hippo")["plan"]["minutes"] == 5 and show("Hippo")["versions"] == []


# ----- a project's first model and what uses it ----------------------------------------------------


def test_first_model_is_planned_trained_and_activated(trained_home):
    assert "needs at least 3: add 1 more" in trained_home["too_few"]
    rc, out, err = trained_home["first"]
    assert rc == 0, err
    assert "has no model yet: planning its first model from its 4 cases (3 train, 1 val) for 1 min" in out
    assert out.index("Model:") < out.index("plan saved to") < out.index("new model version v0001")
    assert "Training: 1 min on cpu" in out and "the run takes 2 steps instead of the plan's" in out
    assert "first model, from scratch, 2 steps" in out and "now the active model of project 'Hippo Test'" in out
    assert "no validation yet (1 case)" in out and "no validation yet" in err and "val Dice" not in err
    rc, out, err = trained_home["second"]
    assert rc == 0, err
    assert "fine-tuning from v0001" in out and "new model version v0002 (parent v0001)" in out
    assert "v0001 stays active" in out


def test_show_list_and_models_of_a_trained_project(trained):
    info = show(PROJECT)
    assert info["active_version"] == "v0001" and [v["version"] for v in info["versions"]] == ["v0001", "v0002"]
    assert info["versions"][1]["parent"] == "v0001"
    assert all(v["source"] != "bundled-default" for v in info["versions"])  # never started from the bundled model
    assert info["plan"]["dims"] in (2, 3) and any(line.startswith("Model:") for line in info["plan_summary"])
    assert info["start_model"].startswith("none")
    rc, out, _ = cli("models", "list", "--project", PROJECT)
    assert rc == 0 and "* v0001" in out and "no validation yet (1 case)" in out
    rc, out, _ = cli("models", "--project", PROJECT, "promote", "v0002")
    assert rc == 0 and show(PROJECT)["active_version"] == "v0002"
    assert cli("models", "--project", PROJECT, "rollback")[0] == 0 and show(PROJECT)["active_version"] == "v0001"
    rc, out, _ = cli("models", "list", "--json")  # the global registry is another one
    assert rc == 0 and json.loads(out) == []


def test_predict_and_eval_with_a_project(trained, tmp_path):
    out_path = tmp_path / "pred.nii.gz"
    rc, out, err = cli("predict", "--project", PROJECT, image(CASES[0]), str(out_path), "--threads", "1")
    assert rc == 0 and out_path.is_file() and "model: project 'Hippo Test', v0001" in out, err
    assert "warning" not in err
    ct = ct_crop(tmp_path / "ct_air.nii.gz")
    rc, out, err = cli("predict", "--project", PROJECT, str(ct), str(tmp_path / "ct.nii.gz"), "--threads", "1")
    warning = [line for line in err.splitlines() if "warning" in line]
    assert rc == 0 and warning[0].startswith("segloop predict: warning:") and "project 'Hippo Test' is for MR" in warning[0]
    assert err.index("warning") < err.index("predict [")  # said before predicting

    assert cli("project", "add-labels", PROJECT, "--labels", "3=extra")[0] == 0  # the model predicts 1 and 2 only
    rc, out, err = cli("eval", "--project", PROJECT, "--threads", "1")  # the project's validation cases
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("hippocampus_003\t") and "extra=n/a" in lines[0]
    assert lines[-1].startswith("mean") and "extra=n/a" in lines[-1] and "n/a: label absent" in lines[-1]
    rc, out, _ = cli("eval", "--project", PROJECT, "--threads", "1", "--json")
    result = json.loads(out)
    assert result["mean"]["extra"]["dice"] is None and result["mean"]["extra"]["dice_na"] == 1
    assert result["project"] == PROJECT and isinstance(result["mean"]["anterior"]["dice"], float)
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(image(CASES[0]), images / "a.nii.gz")
    shutil.copy(label(CASES[0]), labels / "a.nii.gz")
    rc, out, _ = cli("eval", "--project", PROJECT, "--images", str(images), "--labels", str(labels), "--threads", "1")
    assert rc == 0 and out.startswith("a\t") and "extra=n/a" in out


def test_a_copied_project_opens_in_its_new_place(trained, tmp_path, monkeypatch):
    elsewhere = tmp_path / "other home"
    (elsewhere / "projects").mkdir(parents=True)
    shutil.copytree(trained / "projects" / PROJECT, elsewhere / "projects" / "Hippo copy")
    shutil.rmtree(trained / "projects" / PROJECT)  # nothing left where it was made
    monkeypatch.setenv("SEGLOOP_HOME", str(elsewhere))
    info = show("hippo copy")
    assert info["name"] == "Hippo copy" and info["folder"] == str(elsewhere / "projects" / "Hippo copy")
    assert (info["cases"], info["active_version"]) == (4, "v0001")
    rc, out, _ = cli("dataset", "list", "--project", "Hippo copy")
    assert rc == 0 and out.count("hippocampus_") == 4
    rc, out, err = cli("predict", "--project", "Hippo copy", image(CASES[1]), str(tmp_path / "p.nii.gz"), "--threads", "1")
    assert rc == 0 and (tmp_path / "p.nii.gz").is_file(), err
    rc, out, _ = cli("dataset", "export-nnunet", "--project", "Hippo copy", str(tmp_path / "raw"), "--id", "7")
    assert rc == 0 and len(list(next((tmp_path / "raw").glob("Dataset007_*")).joinpath("imagesTr").iterdir())) == 4


def test_fine_tune_a_project_started_from_the_bundled_model(_segloop_home):
    add_cases("Hippocampus (MRI)", CASES[:3])  # the first start made this project from the bundled model
    rc, out, err = cli("train", "--project", "Hippocampus (MRI)", "--steps", "1", "--threads", "1",
                       "--config", '{"validate_at_start": false}')
    assert rc == 0 and "fine-tuning from default" in out and "new model version v0002 (parent v0001)" in out, err
    info = show("Hippocampus (MRI)")
    assert [v["source"] for v in info["versions"]] == ["bundled-default", "fine-tune"]
    assert info["active_version"] == "v0001"  # a fine-tune is promoted by the user, after comparing


def test_ctrl_c_keeps_a_first_model_run_resumable(_segloop_home, monkeypatch):
    import os

    from unet_engine.cli.commands.progress import ProgressBar

    assert cli("project", "create", "Hippo", "--modality", "MR", "--labels", "1=anterior,2=posterior")[0] == 0
    add_cases("Hippo", CASES[:3])
    update = ProgressBar.update

    def interrupt(self, fraction, message=""):
        update(self, fraction, message)
        if self.label == "train":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the first step

    monkeypatch.setattr(ProgressBar, "update", interrupt)
    rc, out, err = cli("train", "--project", "Hippo", "--minutes", "1", "--steps", "3", *FAST)
    assert rc == 130 and "can be resumed" in err and "segloop train --project Hippo --resume" in err
    assert show("Hippo")["versions"] == []
    monkeypatch.setattr(ProgressBar, "update", update)
    rc, out, err = cli("train", "--project", "Hippo", "--resume", "--threads", "1")
    assert rc == 0 and "new model version v0001" in out and "3 steps" in out, err
    assert show("Hippo")["active_version"] == "v0001"  # a first model, also when resumed


def test_minutes_without_steps_fit_the_schedule(_segloop_home, tmp_path):
    ds = tmp_path / "ds"
    assert cli("dataset", "import-msd", str(HIPPO), str(ds), "--labels", "1=anterior,2=posterior", "--limit", "4")[0] == 0
    tiny = json.dumps({"model_spec": {"base_width": 4, "depth": 2}, "batch_size": 4, "num_threads": 1,
                       "val_max_cases": 1, "validate_at_start": False, "cache_cases": 2, "samples_per_case": 4})
    rc, out, err = cli("train", "--dataset", str(ds), "--registry", str(tmp_path / "reg"), "--from", "scratch",
                       "--minutes", "0.1", "--config", tiny, "--threads", "1")
    assert rc == 0, err
    steps = int(out.split("0.1 min: ", 1)[1].split(" steps")[0])
    rc, listed, _ = cli("models", "--registry", str(tmp_path / "reg"), "list", "--json")
    config = json.loads(listed)[0]["config"]
    assert (config["max_steps"], config["max_minutes"]) == (steps, 0.1) and steps >= 20


# ----- broken projects -----------------------------------------------------------------------------


def test_corrupt_and_newer_project_files(_segloop_home, tmp_path):
    for name in ("Corrupt", "Newer", "Fine"):
        assert cli("project", "create", name, "--modality", "MR", "--labels", "1=a")[0] == 0
    root = _segloop_home / "projects"
    (root / "Corrupt" / "project.json").write_text('{"format": "segloop-project", "format_ver')
    data = json.loads((root / "Newer" / "project.json").read_text())
    data["format_version"] = 99
    (root / "Newer" / "project.json").write_text(json.dumps(data))

    rc, out, _ = cli("project", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["Fine"]["error"] is None
    assert "corrupt" in rows["Corrupt"]["error"] and "newer SegLoop" in rows["Newer"]["error"]
    rc, text, _ = cli("project", "list")
    assert rc == 0 and "Corrupt  BROKEN:" in text and "Newer  BROKEN:" in text and "Fine  [MR]" in text
    assert "project.json is corrupt" in fails("project", "project", "show", "corrupt")
    assert "update SegLoop" in fails("predict", "predict", "--project", "Newer", image(CASES[0]), str(tmp_path / "o.nii.gz"))
    assert "project.json is corrupt" in fails("dataset", "dataset", "add", "--project", "Corrupt", "--image",
                                              image(CASES[0]), "--label", label(CASES[0]))
    assert "update SegLoop" in fails("train", "train", "--project", "Newer", "--minutes", "1")
    assert "project.json is corrupt" in fails("models", "models", "--project", "Corrupt", "list")


_KILL_AT = """
import os, signal, sys
from unet_engine.cli.main import main
from unet_engine.projects import first_start, store

first_start()
create = store.ProjectStore.create

def killed(self, *args, **kwargs):
    kwargs["on_step"] = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == sys.argv[1] else None
    return create(self, *args, **kwargs)

store.ProjectStore.create = killed
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("step", ["project.json", "dataset", "model"])
def test_a_create_killed_midway_leaves_no_half_project(_segloop_home, step):
    args = ["project", "create", "Hippo copy", "--modality", "MR", "--from-model", str(BUNDLED_MODELS / "default")]
    proc = subprocess.run([sys.executable, "-c", _KILL_AT, step, *args], cwd=ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    root = _segloop_home / "projects"
    assert any(p.name.startswith(".tmp-") for p in root.iterdir())  # the killed creation's work folder
    rc, out, _ = cli("project", "list", "--json")
    assert rc == 0 and [r["name"] for r in json.loads(out)] == ["Hippocampus (MRI)"]
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())  # removed by the next command
    rc, out, err = cli(*args)
    assert rc == 0 and "model: v0001 (active)" in out, err
    assert show("Hippo copy")["cases"] == 0
