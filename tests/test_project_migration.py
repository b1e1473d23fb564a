"""First start with projects: an earlier SegLoop's data folder becomes "Hippocampus (MRI)".

The fixture ``tests/data/legacy_home/home`` was written by the code before projects
(commit f86f4bf; ``make_legacy_home.py`` beside it): one dataset, one registry with two
versions and a paused run, the effort log. Each test works on a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
from pathlib import Path

import pytest

from tests.train_helpers import DATA, start_python
from unet_engine.projects import LEGACY_PROJECT_NAME, ProjectStore, first_start, migrate_legacy_home

LEGACY = DATA / "legacy_home" / "home"
#: old place (relative to the home) -> new place (relative to the project folder)
MOVES = {"datasets/default": "dataset", "models": "models", "effort_log.json": "effort_log.json"}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".segloop.lock"}


def _expected(home: Path) -> dict[str, str]:
    """What the project folder must hold afterwards, byte for byte: every old file at its new place."""
    out = {}
    for old, new in MOVES.items():
        src = home / old
        if src.is_file():
            out[new] = hashlib.sha256(src.read_bytes()).hexdigest()
        else:
            out.update({f"{new}/{k}": v for k, v in _digests(src).items()})
    # the paused run's state is keyed by the dataset: it moves to the project dataset's key
    return {re.sub(r"^models/training/default-[0-9a-f]+/", "models/training/dataset/", k): v for k, v in out.items()}


@pytest.fixture
def legacy_home(tmp_path) -> Path:
    home = tmp_path / "segloop"
    shutil.copytree(LEGACY, home)
    return home


def _check_migrated(home: Path, expected: dict[str, str]) -> None:
    from unet_engine.progress import CancelToken, run_generator
    from unet_engine.training.fine_tune import StepReport, fine_tune
    from unet_engine.training.setup import run_folder
    from unet_engine.training.config import TrainConfig
    from unet_engine.errors import CancelledError

    store = ProjectStore(home / "projects")
    assert store.names() == [LEGACY_PROJECT_NAME]
    project = store.open(LEGACY_PROJECT_NAME)
    got = {k: v for k, v in _digests(project.folder).items() if k in expected}
    assert got == expected  # every file, byte for byte
    assert not (home / "datasets" / "default").exists() and not (home / "models").exists()
    assert not (home / "effort_log.json").exists()
    assert project.modality == "MR" and project.labels == {1: "anterior", 2: "posterior"}
    assert project.colours == {1: (230, 25, 75), 2: (60, 180, 75)}  # from the active model's card
    ds = project.dataset()
    before = json.loads((LEGACY / "datasets" / "default" / "dataset.json").read_text())["training"]
    assert [(c.id, c.hash, c.split) for c in ds.cases()] == [(c["id"], c["hash"], c["split"]) for c in before]
    assert len(before) == 3 and {c["split"] for c in before} == {"train", "val"}
    assert ds.get("hippocampus_003").model_version == "v0001" and ds.edits_path("hippocampus_003").is_file()
    for c in ds.cases():
        ds.load_case(c)
    reg = project.registry()
    assert [v.version for v in reg.list()] == ["v0001", "v0002"] and reg.active == "v0001"
    assert project.model_path() == reg.root / "versions" / "v0001"
    reg.load("v0002")
    records = json.loads(project.effort_log_path.read_text())["records"]
    assert [r["case"] for r in records] == ["hippocampus_003.nii.gz"]
    # the paused fine-tune is still resumable on the project's dataset
    saved = json.loads((run_folder(reg, ds) / "state.json").read_text())
    token, steps = CancelToken(), []

    def first_step(rep) -> None:
        if isinstance(rep, StepReport) and not rep.paused:
            steps.append(rep.step)
            token.cancel()

    with pytest.raises(CancelledError):
        run_generator(fine_tune(TrainConfig(num_threads=1), dataset=ds, registry=reg, resume=True, cancel=token),
                      first_step)
    assert steps == [saved["step"] + 1] == [3]


def test_a_home_written_before_projects_becomes_one_project_with_nothing_lost(legacy_home):
    expected = _expected(legacy_home)
    project = first_start(legacy_home)
    assert project is not None and project.name == LEGACY_PROJECT_NAME
    _check_migrated(legacy_home, expected)
    again = _digests(legacy_home)
    assert first_start(legacy_home) is None  # done once
    assert _digests(legacy_home) == again


@pytest.mark.parametrize("step", ["project.json", "dataset", "registry", "effort", "done"])
def test_a_migration_killed_at_any_step_is_finished_by_the_next_start(legacy_home, step):
    expected = _expected(legacy_home)
    proc = start_python(
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from unet_engine.projects import migrate_legacy_home\n"
        f"def hook(s):\n"
        f"    print('step', s, flush=True)\n"
        f"    if s == {step!r}:\n"
        f"        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"migrate_legacy_home(Path({str(legacy_home)!r}), on_step=hook)\n")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert f"step {step}" in out
    # the data is in the old place or the new one, never in neither
    for old, new in MOVES.items():
        places = [legacy_home / old, legacy_home / "projects" / ".migrating" / new,
                  legacy_home / "projects" / LEGACY_PROJECT_NAME / new]
        assert sum(p.exists() for p in places) == 1, (old, [str(p) for p in places if p.exists()])
    first_start(legacy_home)
    _check_migrated(legacy_home, expected)


def test_a_taken_name_gets_a_number(legacy_home):
    store = ProjectStore(legacy_home / "projects")
    store.create(LEGACY_PROJECT_NAME.upper(), modality="MR", labels={1: "left"})
    project = migrate_legacy_home(legacy_home, store)
    assert project.name == f"{LEGACY_PROJECT_NAME} 2"
    assert len(project.dataset().cases()) == 3
    assert store.open(LEGACY_PROJECT_NAME).labels == {1: "left"}  # the existing project is untouched


def test_first_start_without_earlier_data_creates_the_default_project_once(tmp_path):
    from unet_engine.paths import BUNDLED_MODELS

    home = tmp_path / "fresh"
    project = first_start(home)
    assert project.name == LEGACY_PROJECT_NAME and project.modality == "MR"
    assert project.model_path() == BUNDLED_MODELS / "default"  # ready to segment, nothing copied
    assert project.start_version() == "default" and project.dataset().cases() == []
    store = ProjectStore(home / "projects")
    store.delete(LEGACY_PROJECT_NAME)
    assert first_start(home) is None and store.names() == []  # a user who deleted it does not get it back
