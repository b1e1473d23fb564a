"""The learning loop in the app, end to end, with the real engine on real hippocampus cases:
open -> predict (worker) -> review -> paint -> add to the training set -> fine-tune a few
steps -> the new version appears -> promote -> predict again; plus pause/resume/cancel,
comparing versions and the "no model" state. Tiny budgets keep the file well under 90 s.

Fine-tuning runs in a spawned child process (unet_engine.train_process); every test checks
that no child process and no Python thread it started is left when it ends. Promote / roll
back run in a worker, so the test waits for ``registry_worker``.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
from PySide6 import QtWidgets

from tests.train_helpers import HIPPO, LABELS, tiny_config, tiny_model

CASE = HIPPO / "imagesTr" / "hippocampus_320.nii.gz"  # not among the 3 cases pre-imported below


@pytest.fixture(autouse=True)
def _no_process_or_thread_left():
    """Fail when a training process or a Python thread started by the test outlives it
    (QThreads and superqt workers are checked by conftest)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (mp.active_children() or _new_threads(before)):
        time.sleep(0.05)
    assert mp.active_children() == [], f"training process(es) left running: {mp.active_children()}"
    assert not _new_threads(before), f"threads left running: {_new_threads(before)}"


def _new_threads(before):
    """Python threads started since ``before`` and still running (Qt's own pool threads that
    merely ran Python code show up as ``_DummyThread`` and are checked by conftest instead)."""
    return [t.name for t in set(threading.enumerate()) - before
            if t.is_alive() and not isinstance(t, threading._DummyThread)]


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from unet_engine.checkpoint import save_checkpoint

    import torch

    model, card = tiny_model(seed=1)
    with torch.no_grad():
        model.head.bias.zero_()  # untrained BatchNorm + bias -> all background; zeroed: a mixed prediction
    card.name = "tiny test model"
    return save_checkpoint(model, card, tmp_path / "tiny_ckpt")


def _learning(parts):
    from desktop_app.learning import learning_controller

    lc = learning_controller(parts.window)
    assert lc is not None
    return lc


def _open(qtbot, parts, path=CASE):
    parts.controller.open_scan(path)
    qtbot.waitUntil(lambda: parts.document.image is not None and not parts.controller.workers.is_busy, timeout=20_000)


def _predict(qtbot, lc, **kwargs):
    assert lc.run_inference(**kwargs) is not None
    qtbot.waitUntil(lambda: lc.infer_worker is None, timeout=30_000)


def _train(qtbot, lc, steps=6):
    lc.training_panel.set_budget("steps", steps)
    assert lc.start_training() is not None
    qtbot.waitUntil(lambda: lc.train_worker is None, timeout=60_000)


def test_whole_learning_loop(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.dataset import RetrainingDataset, import_msd

    parts = segloop_app
    lc = _learning(parts)
    editing = lc.editing
    # the --model option drives inference until a version is promoted
    parts.controller.request_model(str(tiny_checkpoint))
    assert "--model" in lc.inference_panel.model_label.text()
    lc.registry.import_checkpoint(tiny_checkpoint, promote=True)  # v0001: the model's registry entry
    lc.refresh_versions()
    assert lc.versions_panel.row_of("v0001") >= 0
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=3)  # earlier corrected cases (gives a val case)

    _open(qtbot, parts)
    _predict(qtbot, lc)
    doc = parts.document
    assert lc.prediction is not None and lc.prediction.shape == doc.mask.shape
    assert editing.history.undo_text.endswith("AI prediction")
    assert doc.uncertainty is not None and doc.uncertainty.shape == doc.mask.shape
    assert [lab.name for _v, lab in sorted(doc.labels.labels.items())] == ["anterior", "posterior"]
    assert lc.inference_panel.device_label.text() == "Device: CPU"
    # uncertainty review: jump to the most uncertain slice, the count follows
    lc.inference_panel.uncertainty_check.setChecked(True)
    assert parts.options.uncertainty_visible
    n = lc.review.n_uncertain
    assert n > 0
    first = lc.next_uncertain_slice()
    assert doc.cursor[lc.review.axis] == first
    assert first == lc.review.uncertain_slices[0]
    second = lc.next_uncertain_slice()
    assert lc.review.n_reviewed == 1 and second != first
    assert lc.inference_panel.review_label.text() == f"1 of {n} uncertain slices reviewed"
    lc.mark_slice_reviewed()
    assert lc.review.n_reviewed == 2

    # paint through the editing controller's tools: one brush stroke
    tools = editing.tools
    tools.tool = "brush"
    tools.brush.label, tools.brush.size = 2, 5.0
    before = doc.mask.copy()
    axis, k = lc.review.axis, doc.cursor[lc.review.axis]
    tools.press(axis, k, 10.0, 10.0)
    tools.move(axis, k, 10.0, 20.0)
    assert tools.release()
    painted = int(np.count_nonzero(doc.mask != before))
    assert painted > 0

    # add to the training set: edited voxels = mask != prediction
    lc.add_to_dataset()
    qtbot.waitUntil(lambda: lc.add_worker is None, timeout=20_000)
    res = lc.last_add
    assert res is not None and res.case_id and res.voxels_changed == painted
    assert set(res.dice) == {"anterior", "posterior"}
    ds = RetrainingDataset(lc.dataset_folder)
    case = ds.get(res.case_id)
    assert case.model_version == "tiny_ckpt" and case.edits
    _, label, edits = ds.load_case(case)
    assert np.array_equal(label, doc.mask) and int(edits.sum()) == painted
    assert [r.voxels_changed for r in lc.effort.records()] == [painted]
    # a duplicate asks before replacing
    asked = []
    lc.ask_replace = lambda cid: asked.append(cid) or True
    lc.add_to_dataset()
    qtbot.waitUntil(lambda: lc.add_worker is None and lc.last_add is not res, timeout=20_000)
    assert asked == [res.case_id] and lc.last_add.replaced and len(RetrainingDataset(lc.dataset_folder)) == 4

    # fine-tune a few steps from the model in use; the new version appears
    lc.base_config = tiny_config(model_spec=None, max_steps=6, steps_per_epoch=3, validate_at_start=True)
    _train(qtbot, lc, steps=6)
    result = lc.last_train
    assert result is not None and result.version == "v0002" and result.steps == 6
    assert len(lc.training_panel._losses) == 6 and lc.training_panel.dice_curves
    assert lc.versions_panel.row_of("v0002") >= 0
    assert lc.versions_panel.selected_versions() == ["v0002"]

    # compare the two versions on the open scan: a difference overlay and the Dice between them
    assert lc.compare("v0001", "v0002") is not None
    qtbot.waitUntil(lambda: lc.compare_worker is None, timeout=30_000)
    cmp = lc.last_compare
    assert cmp is not None and set(cmp.dice) == {"anterior", "posterior"}
    assert doc.uncertainty is cmp.difference and int(cmp.difference.sum()) == cmp.voxels_differ

    # promote (in a worker): the active version now drives inference
    assert lc.promote("v0002") is not None
    qtbot.waitUntil(lambda: lc.registry_worker is None, timeout=20_000)
    assert lc.registry.active == "v0002" and "v0002" in lc.inference_panel.model_label.text()
    table = lc.versions_panel.table
    assert table.item(lc.versions_panel.row_of("v0002"), 0).text() == "●"
    first_prediction = lc.prediction
    _predict(qtbot, lc)
    assert lc.prediction_version == "v0002"
    assert not np.array_equal(first_prediction, lc.prediction)
    second = doc.mask.copy()
    assert editing.undo()  # the second prediction is one undo step
    assert not np.array_equal(doc.mask, second)
    # roll back returns to v0001
    assert lc.rollback() is not None
    qtbot.waitUntil(lambda: lc.registry_worker is None, timeout=20_000)
    assert lc.registry.active == "v0001" and "v0001" in lc.inference_panel.model_label.text()
    assert not lc.is_busy()


def test_pause_resume_cancel_while_the_app_stays_usable(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.dataset import import_msd

    parts = segloop_app
    lc = _learning(parts)
    lc.registry.import_checkpoint(tiny_checkpoint, promote=True)
    lc.refresh_model()
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=2)
    lc.base_config = tiny_config(model_spec=None, validate_at_start=False)
    lc.training_panel.set_budget("steps", 500)
    assert lc.start_training() is not None
    qtbot.waitUntil(lambda: len(lc.training_panel._losses) >= 1, timeout=30_000)
    lc.training_panel.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: "Paused" in lc.training_panel.status_label.text(), timeout=20_000)
    steps = len(lc.training_panel._losses)
    # the app stays usable: open a scan, run the model on one slice while training is paused
    _open_while_training(qtbot, parts)
    lc.inference_panel.set_scope("slice")
    assert lc.run_inference() is not None
    qtbot.waitUntil(lambda: lc.infer_worker is None, timeout=30_000)
    assert lc.prediction is not None
    assert len(lc.training_panel._losses) == steps  # no step while paused
    lc.training_panel.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: len(lc.training_panel._losses) > steps, timeout=30_000)
    lc.training_panel.cancel_button.click()
    qtbot.waitUntil(lambda: lc.train_worker is None, timeout=30_000)
    assert "Cancelled" in lc.training_panel.status_label.text()
    assert lc.training_panel.start_button.isEnabled()
    assert [v.version for v in lc.registry.list()] == ["v0001"]


def _open_while_training(qtbot, parts):
    parts.controller.open_scan(CASE)
    qtbot.waitUntil(lambda: parts.document.image is not None
                    and "Opening" not in " ".join(parts.controller.workers.descriptions()), timeout=20_000)


def test_close_while_paused_stops_the_training_worker(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.dataset import import_msd

    parts = segloop_app
    lc = _learning(parts)
    lc.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=2)
    lc.base_config = tiny_config(model_spec=None, validate_at_start=False)
    lc.training_panel.set_budget("steps", 500)
    lc.start_training()
    qtbot.waitUntil(lambda: len(lc.training_panel._losses) >= 1, timeout=30_000)
    lc.set_paused(True)
    qtbot.waitUntil(lambda: "Paused" in lc.training_panel.status_label.text(), timeout=20_000)
    proc = lc._train_slot.process
    assert proc is not None and proc.is_alive()
    assert parts.controller.workers.shutdown(15_000)  # quit() -> token -> the child is cancelled and joined
    assert lc.train_worker is None
    assert not proc.is_alive() and proc.exitcode == 0  # it stopped by itself (state saved), not terminated
    assert [v.version for v in lc.registry.list()] == ["v0001"]


def test_a_training_process_that_dies_is_reported_in_the_panel(qtbot, segloop_app, tiny_checkpoint):
    import os
    import signal

    from unet_engine.dataset import import_msd

    parts = segloop_app
    lc = _learning(parts)
    lc.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=2)
    lc.base_config = tiny_config(model_spec=None, validate_at_start=False)
    lc.training_panel.set_budget("steps", 500)
    errors = []
    parts.controller.show_error = lambda title, exc: errors.append((title, str(exc)))
    lc.start_training()
    qtbot.waitUntil(lambda: len(lc.training_panel._losses) >= 1, timeout=30_000)
    os.kill(lc._train_slot.process.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: lc.train_worker is None, timeout=30_000)
    status = lc.training_panel.status_label.text()
    assert "stopped unexpectedly" in status and "SIGKILL" in status, status
    assert errors and errors[0][0] == "Fine-tuning failed"
    assert lc.training_panel.start_button.isEnabled()
    assert [v.version for v in lc.registry.list()] == ["v0001"] and lc.registry.active == "v0001"


def test_no_model_is_said_clearly_and_inference_can_be_cancelled(qtbot, segloop_app, tiny_checkpoint, monkeypatch):
    from unet_engine import paths

    monkeypatch.setattr(paths, "BUNDLED_MODELS", paths.BUNDLED_MODELS.parent / "no-such-models")
    parts = segloop_app
    lc = _learning(parts)
    lc.refresh_model()
    assert lc.inference_panel.model_label.text().startswith("No model")
    _open(qtbot, parts)
    assert lc.run_inference() is None
    assert not lc.inference_panel.run_button.isEnabled()
    lc.set_requested_model(str(tiny_checkpoint))
    assert lc.inference_panel.run_button.isEnabled()
    worker = lc.run_inference()
    lc.cancel_inference()
    qtbot.waitUntil(lambda: lc.infer_worker is None, timeout=30_000)
    assert worker is not None and lc.inference_panel.run_button.isEnabled()
    assert QtWidgets.QApplication.activeModalWidget() is None


def test_fine_tuning_a_3d_model_keeps_its_batch_and_patch(qtbot, segloop_app, tmp_path):
    """A 3D model trained on 2 patches of 16^3 is fine-tuned from the app with the same batch
    and patch (not the 2D defaults: 16 whole-volume patches per step), in the real process."""
    import torch

    from unet_engine.checkpoint import ModelCard, load_card, save_checkpoint
    from unet_engine.dataset import import_msd
    from unet_engine.model import ModelSpec, build_model

    torch.manual_seed(3)
    spec = ModelSpec(dims=3, in_channels=1, num_classes=3, base_width=4, depth=2)
    card = ModelCard(spec=spec, labels={0: "background", **LABELS},
                     training={"config": {"batch_size": 2}, "patch_size": [16, 16, 16]})
    ckpt = save_checkpoint(build_model(spec), card, tmp_path / "tiny3d")
    parts = segloop_app
    lc = _learning(parts)
    parts.controller.request_model(str(ckpt))
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=3)
    _train(qtbot, lc, steps=2)
    assert lc.last_train is not None, lc.training_panel.status_label.text()
    new = lc.registry.list()[-1]
    trained = load_card(lc.registry.versions_dir / new.version)
    assert trained.spec.dims == 3
    assert trained.training["patch_size"] == [16, 16, 16] and trained.training["config"]["batch_size"] == 2


def test_a_cancelled_run_is_continued_from_its_saved_state(qtbot, segloop_app, tiny_checkpoint):
    """Cancel saves the run; "Continue saved run" picks it up at the saved step in a new
    process and finishes the same schedule; the button goes away once the run is done."""
    from unet_engine.dataset import import_msd

    parts = segloop_app
    lc = _learning(parts)
    lc.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, lc.dataset_folder, labels=LABELS, limit=2)
    lc.base_config = tiny_config(model_spec=None, validate_at_start=False, steps_per_epoch=10)
    tp = lc.training_panel
    assert lc.saved_run() is None and not tp.resume_saved_button.isEnabled()
    tp.set_budget("steps", 20)
    assert lc.start_training() is not None
    assert not tp.resume_saved_button.isEnabled()
    qtbot.waitUntil(lambda: len(tp._losses) >= 1, timeout=60_000)
    tp.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: "Paused" in tp.status_label.text(), timeout=20_000)
    tp.cancel_button.click()
    qtbot.waitUntil(lambda: lc.train_worker is None, timeout=30_000)
    saved = lc.saved_run()
    assert saved is not None and 1 <= saved["step"] < 20 and saved["total"] == 20
    assert tp.resume_saved_button.isEnabled()
    assert f"from step {saved['step']} of 20" in tp.resume_saved_button.toolTip()

    tp.resume_saved_button.click()
    assert lc.train_worker is not None and not tp.resume_saved_button.isEnabled()
    qtbot.waitUntil(lambda: lc.train_worker is None, timeout=60_000)
    assert lc.last_train is not None, tp.status_label.text()
    assert lc.last_train.steps == 20 and lc.last_train.parent == "v0001"
    assert [v.version for v in lc.registry.list()] == ["v0001", "v0002"]
    assert lc.saved_run() is None and not tp.resume_saved_button.isEnabled()
