"""The learning loop in the app, end to end, with the real engine on real hippocampus cases:
open -> predict (worker) -> review -> paint -> add to the training set -> fine-tune a few
steps -> the new version appears -> promote -> predict again; plus pause/resume/cancel,
comparing versions and the "no model" state. Tiny budgets keep the file well under 90 s.

Fine-tuning runs in a spawned child process (unet_engine.jobs.training_process); every test checks
that no child process and no Python thread it started is left when it ends. Promote / roll
back run in a worker, so the test waits for ``registry_worker``.

Everything happens in the project the app opens at start ("Hippocampus (MRI)", from the
bundled model): its dataset and registry (``parts.session``); the controllers are reached
by concern (``parts.inference``, ``parts.dataset``, ``parts.training``, ``parts.versions``).
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
    from unet_engine.model.checkpoint import save_checkpoint

    import torch

    model, card = tiny_model(seed=1)
    with torch.no_grad():
        model.head.bias.zero_()  # untrained BatchNorm + bias -> all background; zeroed: a mixed prediction
    card.name = "tiny test model"
    return save_checkpoint(model, card, tmp_path / "tiny_ckpt")


def _open(qtbot, parts, path=CASE):
    parts.controller.open_scan(path)
    qtbot.waitUntil(lambda: parts.document.image is not None and not parts.controller.workers.is_busy, timeout=20_000)


def _predict(qtbot, parts, **kwargs):
    assert parts.inference.run_inference(**kwargs) is not None
    qtbot.waitUntil(lambda: parts.inference.worker is None, timeout=30_000)


def _train(qtbot, parts, steps=6):
    parts.training.panel.set_budget("steps", steps)
    assert parts.training.start_training() is not None
    qtbot.waitUntil(lambda: parts.training.worker is None, timeout=60_000)


def test_whole_learning_loop(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.data.importing import import_msd

    parts = segloop_app
    inf, ds_c, tr, vc, session = parts.inference, parts.dataset, parts.training, parts.versions, parts.session
    editing = parts.editing
    # the --model option drives inference until a version is promoted
    parts.controller.request_model(str(tiny_checkpoint))
    assert "--model" in inf.panel.model_label.text()
    session.registry.import_checkpoint(tiny_checkpoint, promote=True)  # v0001: the model's registry entry
    vc.refresh_versions()
    assert vc.panel.row_of("v0001") >= 0
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=6)  # earlier corrected cases (2 of them val)

    _open(qtbot, parts)
    _predict(qtbot, parts)
    doc = parts.document
    assert parts.learning.prediction.mask is not None and parts.learning.prediction.mask.shape == doc.mask.shape
    assert editing.history.undo_text.endswith("AI prediction")
    assert doc.uncertainty is not None and doc.uncertainty.shape == doc.mask.shape
    assert [lab.name for _v, lab in sorted(doc.labels.labels.items())] == ["anterior", "posterior"]
    assert inf.panel.device_label.text() == "Device: CPU (float32)"  # the suite runs float32
    assert inf.panel.estimate_label.text() == ""  # no "finishing" left under the bar once done
    # uncertainty review: jump to the most uncertain slice, the count follows
    inf.panel.uncertainty_check.setChecked(True)
    assert parts.options.uncertainty_visible
    n = inf.review.n_uncertain
    assert n > 0
    first = inf.next_uncertain_slice()
    assert doc.cursor[inf.review.axis] == first
    assert first == inf.review.uncertain_slices[0]
    second = inf.next_uncertain_slice()
    assert inf.review.n_reviewed == 1 and second != first
    assert inf.panel.review_label.text() == f"1 of {n} uncertain slices reviewed"
    inf.mark_slice_reviewed()
    assert inf.review.n_reviewed == 2

    # paint through the editing controller's tools: one brush stroke
    tools = editing.tools
    tools.tool = "brush"
    tools.brush.label, tools.brush.size = 2, 5.0
    before = doc.mask.copy()
    axis, k = inf.review.axis, doc.cursor[inf.review.axis]
    tools.press(axis, k, 10.0, 10.0)
    tools.move(axis, k, 10.0, 20.0)
    assert tools.release()
    painted = int(np.count_nonzero(doc.mask != before))
    assert painted > 0

    # add to the training set: edited voxels = mask != prediction
    ds_c.add_to_dataset()
    qtbot.waitUntil(lambda: ds_c.worker is None, timeout=20_000)
    res = ds_c.last_add
    assert res is not None and res.case_id and res.voxels_changed == painted
    assert set(res.dice) == {"anterior", "posterior"}
    ds = RetrainingDataset(session.dataset_folder)
    case = ds.get(res.case_id)
    assert case.model_version == "tiny_ckpt" and case.edits
    _, label, edits = ds.load_case(case)
    assert np.array_equal(label, doc.mask) and int(edits.sum()) == painted
    assert [r.voxels_changed for r in ds_c.effort.records()] == [painted]
    # a duplicate asks before replacing
    asked = []
    ds_c.ask_replace = lambda cid: asked.append(cid) or True
    ds_c.add_to_dataset()
    qtbot.waitUntil(lambda: ds_c.worker is None and ds_c.last_add is not res, timeout=20_000)
    assert asked == [res.case_id] and ds_c.last_add.replaced and len(RetrainingDataset(session.dataset_folder)) == 7

    # fine-tune a few steps from the model in use; the new version appears
    tr.base_config = tiny_config(model_spec=None, max_steps=6, steps_per_epoch=3, validate_at_start=True,
                                 val_max_cases=2)  # 2 validation cases: a Dice worth drawing
    _train(qtbot, parts, steps=6)
    result = tr.last_train
    assert result is not None and result.version == "v0002" and result.steps == 6
    assert [s for s, _loss in tr.panel.loss_points] == [1, 2, 3, 4, 5, 6] and tr.panel.dice_curves
    assert vc.panel.row_of("v0002") >= 0
    assert vc.panel.selected_versions() == ["v0002"]

    # compare the two versions on the open scan: a difference overlay and the Dice between them
    assert vc.compare("v0001", "v0002") is not None
    qtbot.waitUntil(lambda: vc.compare_worker is None, timeout=30_000)
    cmp = vc.last_compare
    assert cmp is not None and set(cmp.dice) == {"anterior", "posterior"}
    assert doc.uncertainty is cmp.difference and int(cmp.difference.sum()) == cmp.voxels_differ

    # promote (in a worker): the active version now drives inference
    assert vc.promote("v0002") is not None
    qtbot.waitUntil(lambda: vc.registry_worker is None, timeout=20_000)
    assert session.registry.active == "v0002" and "v0002" in inf.panel.model_label.text()
    table = vc.panel.table
    assert table.item(vc.panel.row_of("v0002"), 0).text() == "●"
    first_prediction = parts.learning.prediction.mask
    _predict(qtbot, parts)
    assert parts.learning.prediction.version == "v0002"
    assert not np.array_equal(first_prediction, parts.learning.prediction.mask)
    second = doc.mask.copy()
    assert editing.undo()  # the second prediction is one undo step
    assert not np.array_equal(doc.mask, second)
    # roll back returns to v0001
    assert vc.rollback() is not None
    qtbot.waitUntil(lambda: vc.registry_worker is None, timeout=20_000)
    assert session.registry.active == "v0001" and "v0001" in inf.panel.model_label.text()
    assert not parts.controller.workers.is_busy


def test_pause_resume_cancel_while_the_app_stays_usable(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.data.importing import import_msd

    parts = segloop_app
    inf, tr, session = parts.inference, parts.training, parts.session
    session.registry.import_checkpoint(tiny_checkpoint, promote=True)
    inf.refresh_model()
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=2)
    tr.base_config = tiny_config(model_spec=None, validate_at_start=False)
    tr.panel.set_budget("steps", 500)
    assert tr.start_training() is not None
    qtbot.waitUntil(lambda: len(tr.panel.loss_points) >= 1, timeout=30_000)
    tr.panel.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: "Paused" in tr.panel.status_label.text(), timeout=20_000)
    steps = len(tr.panel.loss_points)
    # the app stays usable: open a scan, run the model on one slice while training is paused
    _open_while_training(qtbot, parts)
    inf.panel.set_scope("slice")
    assert inf.run_inference() is not None
    qtbot.waitUntil(lambda: inf.worker is None, timeout=30_000)
    assert parts.learning.prediction.mask is not None
    assert len(tr.panel.loss_points) == steps  # no step while paused
    tr.panel.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: len(tr.panel.loss_points) > steps, timeout=30_000)
    tr.panel.cancel_button.click()
    qtbot.waitUntil(lambda: tr.worker is None, timeout=30_000)
    assert "Cancelled" in tr.panel.status_label.text()
    assert tr.panel.start_button.isEnabled()
    assert [v.version for v in session.registry.list()] == ["v0001"]


def _open_while_training(qtbot, parts):
    parts.controller.open_scan(CASE)
    qtbot.waitUntil(lambda: parts.document.image is not None
                    and "Opening" not in " ".join(parts.controller.workers.descriptions()), timeout=20_000)


def test_close_while_paused_stops_the_training_worker(qtbot, segloop_app, tiny_checkpoint):
    from unet_engine.data.importing import import_msd

    parts = segloop_app
    tr, session = parts.training, parts.session
    session.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=2)
    tr.base_config = tiny_config(model_spec=None, validate_at_start=False)
    tr.panel.set_budget("steps", 500)
    tr.start_training()
    qtbot.waitUntil(lambda: len(tr.panel.loss_points) >= 1, timeout=30_000)
    tr.set_paused(True)
    qtbot.waitUntil(lambda: "Paused" in tr.panel.status_label.text(), timeout=20_000)
    proc = tr.process
    assert proc is not None and proc.is_alive()
    assert parts.controller.workers.shutdown(15_000)  # quit() -> token -> the child is cancelled and joined
    assert tr.worker is None
    assert not proc.is_alive() and proc.exitcode == 0  # it stopped by itself (state saved), not terminated
    assert [v.version for v in session.registry.list()] == ["v0001"]


def test_a_training_process_that_dies_is_reported_in_the_panel(qtbot, segloop_app, tiny_checkpoint):
    import os
    import signal

    from unet_engine.data.importing import import_msd

    parts = segloop_app
    tr, session = parts.training, parts.session
    session.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=2)
    tr.base_config = tiny_config(model_spec=None, validate_at_start=False)
    tr.panel.set_budget("steps", 500)
    errors = []
    parts.controller.show_error = lambda title, exc: errors.append((title, str(exc)))
    tr.start_training()
    qtbot.waitUntil(lambda: len(tr.panel.loss_points) >= 1, timeout=30_000)
    os.kill(tr.process.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: tr.worker is None, timeout=30_000)
    status = tr.panel.status_label.text()
    assert "stopped unexpectedly" in status and "SIGKILL" in status, status
    assert errors and errors[0][0] == "Fine-tuning failed"
    assert tr.panel.start_button.isEnabled()
    assert [v.version for v in session.registry.list()] == ["v0001"] and session.registry.active == "v0001"


def test_no_model_is_said_clearly_and_inference_can_be_cancelled(qtbot, segloop_app, tiny_checkpoint, monkeypatch):
    from unet_engine import paths
    from unet_engine.projects import project as project_module

    missing = paths.BUNDLED_MODELS.parent / "no-such-models"
    monkeypatch.setattr(paths, "BUNDLED_MODELS", missing)
    monkeypatch.setattr(project_module, "BUNDLED_MODELS", missing)  # the project started from it
    parts = segloop_app
    inf = parts.inference
    inf.refresh_model()
    assert inf.panel.model_label.text().startswith("No model")
    _open(qtbot, parts)
    assert inf.run_inference() is None
    assert not inf.panel.run_button.isEnabled()
    inf.set_requested_model(str(tiny_checkpoint))
    assert inf.panel.run_button.isEnabled()
    worker = inf.run_inference()
    inf.cancel_inference()
    qtbot.waitUntil(lambda: inf.worker is None, timeout=30_000)
    assert worker is not None and inf.panel.run_button.isEnabled()
    assert QtWidgets.QApplication.activeModalWidget() is None


def test_fine_tuning_a_3d_model_keeps_its_batch_and_patch(qtbot, segloop_app, tmp_path):
    """A 3D model trained on 2 patches of 16^3 is fine-tuned from the app with the same batch
    and patch (not the 2D defaults: 16 whole-volume patches per step), in the real process."""
    import torch

    from unet_engine.model.checkpoint import ModelCard, load_card, save_checkpoint
    from unet_engine.data.importing import import_msd
    from unet_engine.model.network import ModelSpec, build_model

    torch.manual_seed(3)
    spec = ModelSpec(dims=3, in_channels=1, num_classes=3, base_width=4, depth=2)
    card = ModelCard(spec=spec, labels={0: "background", **LABELS},
                     training={"config": {"batch_size": 2}, "patch_size": [16, 16, 16]})
    ckpt = save_checkpoint(build_model(spec), card, tmp_path / "tiny3d")
    parts = segloop_app
    tr, session = parts.training, parts.session
    parts.controller.request_model(str(ckpt))
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=3)
    _train(qtbot, parts, steps=2)
    assert tr.last_train is not None, tr.panel.status_label.text()
    new = session.registry.list()[-1]
    trained = load_card(session.registry.versions_dir / new.version)
    assert trained.spec.dims == 3
    assert trained.training["patch_size"] == [16, 16, 16] and trained.training["config"]["batch_size"] == 2


def test_a_cancelled_run_is_continued_from_its_saved_state(qtbot, segloop_app, tiny_checkpoint):
    """Cancel saves the run; "Continue saved run" picks it up at the saved step in a new
    process and finishes the same schedule; the button goes away once the run is done."""
    from unet_engine.data.importing import import_msd

    parts = segloop_app
    tr, session = parts.training, parts.session
    session.registry.import_checkpoint(tiny_checkpoint, promote=True)
    import_msd(HIPPO, session.dataset_folder, labels=LABELS, limit=2)
    tr.base_config = tiny_config(model_spec=None, validate_at_start=False, steps_per_epoch=10)
    tp = tr.panel
    assert tr.saved_run() is None and not tp.resume_saved_button.isEnabled()
    tp.set_budget("steps", 20)
    assert tr.start_training() is not None
    assert not tp.resume_saved_button.isEnabled()
    qtbot.waitUntil(lambda: len(tp.loss_points) >= 1, timeout=60_000)
    tp.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: "Paused" in tp.status_label.text(), timeout=20_000)
    tp.cancel_button.click()
    qtbot.waitUntil(lambda: tr.worker is None, timeout=30_000)
    saved = tr.saved_run()
    assert saved is not None and 1 <= saved["step"] < 20 and saved["total"] == 20
    assert tp.resume_saved_button.isEnabled()
    assert f"from step {saved['step']} of 20" in tp.resume_saved_button.toolTip()

    tp.resume_saved_button.click()
    assert tr.worker is not None and not tp.resume_saved_button.isEnabled()
    qtbot.waitUntil(lambda: tr.worker is None, timeout=60_000)
    assert tr.last_train is not None, tp.status_label.text()
    assert tr.last_train.steps == 20 and tr.last_train.parent == "v0001"
    assert [v.version for v in session.registry.list()] == ["v0001", "v0002"]
    assert tr.saved_run() is None and not tp.resume_saved_button.isEnabled()


def test_a_retried_add_never_adds_a_scan_opened_in_the_meantime(qtbot, segloop_app):
    """"Replace its mask?" answered after another scan was opened: the retry is refused with a
    note, the other scan is not added and the case already in the set keeps its mask."""
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.io.volume_io import read_mask, read_volume

    parts = segloop_app
    ds_c, doc, session = parts.dataset, parts.document, parts.session
    _open(qtbot, parts)
    doc.replace_mask(read_mask(HIPPO / "labelsTr" / CASE.name, doc.image))
    ds_c.add_to_dataset()
    qtbot.waitUntil(lambda: ds_c.worker is None and ds_c.last_add is not None, timeout=20_000)
    first = ds_c.last_add
    ds = RetrainingDataset(session.dataset_folder)
    _, stored, _ = ds.load_case(ds.get(first.case_id))

    other_path = HIPPO / "imagesTr" / "hippocampus_003.nii.gz"
    other = read_volume(other_path)
    other_mask = read_mask(HIPPO / "labelsTr" / other_path.name, other)

    def open_another_then_answer_yes(_case_id: str) -> bool:
        doc.set_image(other, other_mask)  # the user opened another scan while the question was up
        return True

    ds_c.ask_replace = open_another_then_answer_yes
    doc.set_image(read_volume(CASE), stored.copy())  # the same scan again: a duplicate
    doc.replace_mask(np.where(stored > 0, 1, 0).astype(stored.dtype))  # a different mask to replace with
    ds_c.add_to_dataset()
    qtbot.waitUntil(lambda: ds_c.worker is None and "another scan was opened" in
                    parts.window.statusBar().currentMessage(), timeout=20_000)
    ds = RetrainingDataset(session.dataset_folder)
    assert [c.id for c in ds.cases()] == [first.case_id] and ds_c.last_add is first
    assert np.array_equal(ds.load_case(ds.get(first.case_id))[1], stored)
