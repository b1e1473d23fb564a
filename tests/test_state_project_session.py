"""The app's Qt-free project state: which model and start point a project gives, the modality
notes of a scan, the last prediction (real projects on disk, real scans; no display)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train_helpers import HIPPO, tiny_model

CT = HIPPO.parent / "io" / "ct_spleen_nifti" / "image.nii.gz"


@pytest.fixture
def store(tmp_path):
    from unet_engine.projects import ProjectStore

    return ProjectStore(tmp_path / "projects")


@pytest.fixture
def tiny_ckpt(tmp_path):
    from unet_engine.model.checkpoint import save_checkpoint

    model, card = tiny_model(seed=2)
    return save_checkpoint(model, card, tmp_path / "tiny")


def test_an_empty_project_needs_a_first_model(store):
    from desktop_app.state.project_session import ProjectSession
    from unet_engine.data.importing import import_msd

    session = ProjectSession(store)
    seen = []
    session.project_changed.connect(seen.append)
    assert session.model_path() is None and session.registry is None and session.case_counts().total == 0
    project = store.create("Knee MR", modality="MR", labels={1: "front", 2: "back"})
    session.open(project)
    assert seen == [project] and session.name == "Knee MR"
    assert session.model_path() is None and session.model_source() == ""
    assert session.needs_first_model() and session.fine_tune_start() is None
    assert session.cases_needed() == 3
    import_msd(HIPPO, session.dataset_folder, limit=2)
    counts = session.case_counts()
    assert (counts.total, counts.train + counts.val) == (2, 2) and session.cases_needed(counts) == 1


def test_the_bundled_start_then_the_active_version_then_model_override(store, tiny_ckpt):
    from desktop_app.state.project_session import ProjectSession

    session = ProjectSession(store)
    session.open(store.create("Hippo", modality="MR", start_model="default"))
    assert session.model_source() == "bundled start" and session.version_of(session.model_path()) == "bundled-default"
    assert session.fine_tune_start() == "default" and not session.needs_first_model()
    # --model PATH overrides until a version is promoted; the fine-tune starts from it
    changed = []
    session.model_changed.connect(lambda: changed.append(1))
    session.request_model(str(tiny_ckpt))
    assert changed and session.model_path() == tiny_ckpt and session.model_source() == "--model"
    assert session.fine_tune_start() == str(tiny_ckpt)
    info = session.registry.import_checkpoint(tiny_ckpt, promote=True)
    session.clear_requested_model()
    assert session.model_source() == "active version" and session.version_of(session.model_path()) == info.version
    assert session.fine_tune_start() == info.version
    # "--model default" is the project's own model; opening another project drops --model
    session.request_model("default")
    assert session.requested_model is None
    session.request_model(str(tiny_ckpt))
    session.open(store.create("Other", modality="CT", labels={1: "spleen"}))
    assert session.requested_model is None and session.model_path() is None


def test_scan_checks_and_prediction_belong_to_one_scan():
    from desktop_app.state.prediction import PredictionState
    from desktop_app.state.scan_checks import ScanChecks, modality_notes
    from unet_engine.io.volume_io import read_volume

    ct, mr = read_volume(CT), read_volume(HIPPO / "imagesTr" / "hippocampus_001.nii.gz")
    notes = modality_notes(ct)
    assert notes["CT"] is None and "Hounsfield" in notes["MR"]
    checks = ScanChecks()
    assert not checks.known(ct) and checks.mismatch(ct, "MR") is None  # not checked: no guess
    checks.record(ct, notes)
    assert checks.known(ct) and not checks.known(mr)
    assert "Hounsfield" in checks.mismatch(ct, "MR") and checks.mismatch(ct, "US") is None
    checks.accept(ct, "MR", "Run the model")
    assert checks.accepted(ct, "MR", "Run the model") and not checks.accepted(ct, "MR", "Add to training set")
    checks.record(mr, modality_notes(mr))
    assert not checks.accepted(mr, "MR", "Run the model") and checks.mismatch(mr, "MR") is None
    assert "not in CT Hounsfield units" in checks.mismatch(mr, "CT")

    pred = PredictionState()
    mask = np.ones(mr.shape, np.uint8)
    pred.record(mask, mr, "v0001")
    assert pred.for_volume(mr) == (mask, "v0001") and pred.for_volume(ct) == (None, None)
    pred.clear()
    assert pred.for_volume(mr) == (None, None)
