"""From nothing to a first model, in the app, on real hippocampus cases with the real engine.

New project "Hippo renamed" (labels 1=head, 2=tail, typed in the New project dialog) ->
3 corrected cases added (the fixtures' manual labels as the masks) -> "Train first model":
the plan is computed in a worker and shown; its Advanced fields are shrunk to a 2D network
of width 4 trained 200 steps; Start trains it in the training child process; the run is
paused, cancelled and continued from its saved state -> the first model becomes the
project's active version -> Run model uses it. The "Hippocampus (MRI)" project the app
opened at start is byte-identical afterwards.

Real clicks and typing drive the dialogs and buttons; waits follow the workers and reports.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from tests.train_helpers import HIPPO

CASES = sorted((HIPPO / "imagesTr").glob("*.nii.gz"))[:3]  # 001, 003, 148: one lands in validation
LEFT = QtCore.Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def _no_training_process_left():
    yield
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and mp.active_children():
        time.sleep(0.05)
    assert mp.active_children() == [], f"training process(es) left running: {mp.active_children()}"


def _snapshot(folder):
    """Every file of a project folder (lock files aside) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".segloop.lock" not in p.name}


def _click(qtbot, button):
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, LEFT)


def _type(qtbot, widget, text):
    """Select what the field holds and type ``text`` over it."""
    widget.setFocus()
    widget.selectAll()
    qtbot.keyClicks(widget, text)


def _type_label(qtbot, table, row, name):
    rect = table.visualRect(table.model().index(row, 1))
    qtbot.mouseClick(table.viewport(), LEFT, pos=rect.center())
    qtbot.keyClick(table, QtCore.Qt.Key.Key_F2)
    editor = table.viewport().findChild(QtWidgets.QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, name)
    qtbot.keyClick(editor, QtCore.Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: table.item(row, 1).text() == name)


def _new_project(qtbot, parts):
    parts.window.named_actions["new_project"].trigger()  # File > New project...
    dlg = parts.projects.new_dialog
    qtbot.keyClicks(dlg.name_edit, "Hippo renamed")
    assert dlg.modality.currentData() == "MR" and dlg.start_combo.currentData() == "empty"
    _click(qtbot, dlg.add_button)
    _click(qtbot, dlg.add_button)
    _type_label(qtbot, dlg.table, 0, "head")
    _type_label(qtbot, dlg.table, 1, "tail")
    _click(qtbot, dlg.create_button)
    qtbot.waitUntil(lambda: parts.session.name == "Hippo renamed" and not parts.controller.workers.is_busy,
                    timeout=20_000)


def _add_cases(qtbot, parts):
    ip = parts.inference.panel
    for n, case in enumerate(CASES):
        parts.controller.open_scan(case, mask=HIPPO / "labelsTr" / case.name)
        qtbot.waitUntil(lambda c=case: parts.document.image is not None
                        and parts.document.image.source_path is not None
                        and c.name in str(parts.document.image.source_path)
                        and not parts.controller.workers.is_busy, timeout=20_000)
        assert {v: lab.name for v, lab in parts.document.labels.labels.items()} == {1: "head", 2: "tail"}
        last = parts.dataset.last_add
        _click(qtbot, ip.add_button)
        qtbot.waitUntil(lambda last=last: parts.dataset.last_add is not last and parts.dataset.worker is None,
                        timeout=20_000)
        left = 2 - n
        if left:
            assert ip.model_label.text().startswith(f"No model yet: add {left} more corrected case")
    assert ip.model_label.text() == "No model yet: press Train first model in the Fine-tune panel."
    assert "no validation yet" in ip.add_label.text()  # 3 cases, 1 of them for validation


def _shrink_plan(qtbot, dlg):
    """Advanced: a 2D network, width 4, depth 2, patch 32 x 48, batch 2, 200 steps."""
    dlg.advanced.setFocus()
    qtbot.keyClick(dlg.advanced, QtCore.Qt.Key.Key_Space)  # open the Advanced section
    assert dlg.advanced.isChecked() and dlg.base_width.isVisible()
    dlg.kind.setFocus()
    while dlg.kind.currentIndex() > 0:
        qtbot.keyClick(dlg.kind, QtCore.Qt.Key.Key_Up)  # "2D" is the first choice
    _type(qtbot, dlg.base_width, "4")
    _type(qtbot, dlg.depth_field, "2")
    _type(qtbot, dlg.patch, "32 x 48")
    _type(qtbot, dlg.batch, "2")
    _type(qtbot, dlg.steps, "200")
    assert not dlg.start_button.isEnabled()  # the plan on screen is not the edited one yet
    _click(qtbot, dlg.update_button)


def test_a_new_project_from_nothing_to_a_first_model(qtbot, segloop_app):
    parts = segloop_app
    hippo = parts.session.project
    before = _snapshot(hippo.folder)
    assert "dataset/dataset.json" in before

    _new_project(qtbot, parts)
    project = parts.session.project
    assert project.labels == {1: "head", 2: "tail"} and project.modality == "MR"
    ip, tp = parts.inference.panel, parts.training.panel
    assert ip.model_label.text().startswith("No model yet: add 3 more corrected cases")
    assert tp.first_model_button.isVisible() and not tp.first_model_button.isEnabled()
    _add_cases(qtbot, parts)
    assert len(parts.session.dataset()) == 3 and not ip.run_button.isEnabled()

    # Train first model: the plan is made in a worker and shown before anything trains
    _click(qtbot, tp.first_model_button)
    qtbot.waitUntil(lambda: parts.first_model.dialog is not None, timeout=120_000)
    dlg = parts.first_model.dialog
    summary = dlg.summary.toPlainText()
    assert "U-Net" in summary and "why:" in summary and "(calibrated)" in summary
    assert dlg.minutes.value() == parts.first_model.default_minutes and parts.training.worker is None
    _shrink_plan(qtbot, dlg)
    qtbot.waitUntil(lambda: parts.first_model.worker is None and dlg.start_button.isEnabled(), timeout=60_000)
    plan = dlg.plan
    assert (plan.dims, plan.base_width, plan.depth, plan.patch_size, plan.batch_size, plan.max_steps) == \
        (2, 4, 2, [32, 48], 2, 200)
    assert "2D U-Net, base width 4, depth 2" in dlg.summary.toPlainText()
    _click(qtbot, dlg.start_button)
    assert parts.training.worker is not None and parts.first_model.dialog is None
    assert project.plan["max_steps"] == 200  # saved with the project before training

    # the same live curves, pause, cancel and continue as any fine-tune
    qtbot.waitUntil(lambda: len(tp.loss_points) >= 1, timeout=60_000)
    _click(qtbot, tp.pause_button)
    qtbot.waitUntil(lambda: "Paused" in tp.status_label.text(), timeout=30_000)
    _click(qtbot, tp.cancel_button)
    qtbot.waitUntil(lambda: parts.training.worker is None, timeout=30_000)
    assert "Cancelled" in tp.status_label.text() and parts.session.registry.list() == []
    assert not ip.run_button.isEnabled()
    _click(qtbot, tp.resume_saved_button)
    qtbot.waitUntil(lambda: parts.training.worker is None, timeout=120_000)
    res = parts.training.last_train
    assert res is not None, tp.status_label.text()
    assert res.version == "v0001" and res.steps == 200 and res.parent is None
    status = tp.status_label.text()
    assert "first model v0001 is now the project's active model" in status
    assert "no validation yet (1 case)" in status and "Dice" not in status  # 1 validation case: no score shown
    assert tp.dice_plot.plotItem.titleLabel.text.startswith("Validation Dice: no validation yet")
    assert not tp.dice_curves and tp.val_loss_curve.getData()[0] is not None

    # the first model is the active version: Run model uses it
    assert parts.session.registry.active == "v0001"
    assert "v0001 (active version)" in ip.model_label.text()
    assert parts.versions.panel.row_of("v0001") >= 0
    mean_cell = parts.versions.panel.table.item(parts.versions.panel.row_of("v0001"),
                                               parts.versions.panel.table.columnCount() - 1)
    assert mean_cell.text() == "no validation yet"
    assert tp.first_model_button.isHidden() and tp.start_button.isEnabled()
    # the Fine-tune panel's next run fine-tunes the planned model as the plan says (patch, batch, rate)
    plan = parts.session.project.plan
    fine = parts.training.training_config()
    assert fine.lr == plan["finetune_lr"] and fine.patch_size == plan["patch_size"]
    assert fine.batch_size == plan["batch_size"]
    _click(qtbot, ip.run_button)
    qtbot.waitUntil(lambda: parts.inference.worker is None and parts.learning.prediction.mask is not None,
                    timeout=30_000)
    assert parts.learning.prediction.version == "v0001"
    assert set(np.unique(parts.document.mask)) <= {0, 1, 2}
    assert {v: lab.name for v, lab in parts.document.labels.labels.items()} == {1: "head", 2: "tail"}

    # the project the app opened at start was never touched
    assert _snapshot(hippo.folder) == before


def test_the_ai_panel_names_the_network_as_the_plan_does():
    from desktop_app.controllers.inference import network_kind
    from unet_engine.model.network import ModelSpec

    kinds = [network_kind(ModelSpec(dims=2)), network_kind(ModelSpec(dims=2, context_slices=1, in_channels=3)),
             network_kind(ModelSpec(dims=3))]
    assert kinds == ["2D", "2.5D", "3D"]  # a 2.5D plan's model is not shown as "2D"
