"""Projects in the app, with the real engine and real scans: the open project is visible and
remembered, switching follows it (labels, model text, dataset, versions, effort chart) and is
refused while a job runs or the mask is unsaved, a project with no model says what to do, a
scan that contradicts the project's modality asks before the model runs or the case is
added, mask labels the project lacks ask before anything is added, the open project cannot
be deleted, and the New project dialog shows the store's errors.

Dialogs and buttons are driven with the mouse and keyboard (qtbot); waits follow the workers.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from tests.train_helpers import HIPPO, LABELS, tiny_model

IO = HIPPO.parent / "io"
CT = IO / "ct_spleen_nifti" / "image.nii.gz"
CASES = sorted((HIPPO / "imagesTr").glob("*.nii.gz"))
LEFT = QtCore.Qt.MouseButton.LeftButton


@pytest.fixture
def tiny_checkpoint(tmp_path):
    import torch

    from unet_engine.model.checkpoint import save_checkpoint

    model, card = tiny_model(seed=1)
    with torch.no_grad():
        model.head.bias.zero_()
    return save_checkpoint(model, card, tmp_path / "tiny_ckpt")


def _open(qtbot, parts, path, mask=None):
    parts.controller.open_scan(path, mask=mask)
    qtbot.waitUntil(lambda: parts.document.image is not None and parts.document.image.source_path is not None
                    and str(path) in str(parts.document.image.source_path) and not parts.controller.workers.is_busy,
                    timeout=20_000)


def _idle(qtbot, parts):
    qtbot.waitUntil(lambda: not parts.controller.workers.is_busy, timeout=30_000)


def _click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, LEFT)


def _labels(parts):
    return {v: (lab.name, lab.colour) for v, lab in parts.document.labels.labels.items()}


def test_the_open_project_is_visible_and_remembered(qtbot):
    from desktop_app.app import build_app
    from desktop_app.settings import Settings
    from unet_engine.projects import ProjectStore

    store = ProjectStore()
    store.create("Alpha", modality="US", labels={1: "cyst"})
    store.create("Spleen CT", modality="CT", labels={1: "spleen"}, colours={1: (0, 200, 0)})
    Settings().set_last_project("Spleen CT")
    parts = build_app(restore_layout=False)
    qtbot.addWidget(parts.window)
    try:
        assert parts.session.name == "Spleen CT"  # the remembered one, not the first
        assert parts.session.store.names() == ["Alpha", "Spleen CT"]  # projects exist: no default one is made
        assert parts.window.windowTitle() == "Project: Spleen CT — SegLoop"
        combo = parts.window.findChild(QtWidgets.QComboBox, "project_combo")
        assert combo.currentText() == "Spleen CT" and combo.count() == 2
        menu = parts.window.project_menu
        assert [(a.text(), a.isChecked()) for a in menu.actions()] == [("Alpha", False), ("Spleen CT", True)]
        assert _labels(parts) == {1: ("spleen", (0, 200, 0))}
    finally:
        parts.controller.workers.wait_idle(10_000)
        parts.controller.shutdown()


def test_switching_follows_the_project_and_is_remembered(qtbot, segloop_app):
    from desktop_app.settings import Settings

    parts = segloop_app
    hippo = parts.session.project
    spleen = parts.session.store.create("Spleen CT", modality="CT", labels={1: "spleen"}, colours={1: (0, 200, 0)})
    parts.projects.refresh_list()
    _open(qtbot, parts, CT, IO / "ct_spleen_nifti" / "label.nii.gz")
    assert _labels(parts)[1][0] == "anterior"  # the Hippocampus project's labels name the mask
    combo = parts.window.findChild(QtWidgets.QComboBox, "project_combo")
    combo.setFocus()
    qtbot.keyClick(combo, QtCore.Qt.Key.Key_Down)  # the user picks "Spleen CT" in the toolbar switcher
    assert parts.session.project.folder == spleen.folder
    assert "Project: Spleen CT" in parts.window.windowTitle() and "image.nii.gz" in parts.window.windowTitle()
    assert _labels(parts) == {1: ("spleen", (0, 200, 0))}  # the views' labels follow the project
    assert parts.inference.panel.model_label.text().startswith("No model yet: add 3 more corrected cases")
    assert not parts.inference.panel.run_button.isEnabled()
    assert parts.versions.panel.table.rowCount() == 0
    assert "Spleen CT: 0 cases" in parts.training.panel.dataset_label.text()
    assert parts.dataset.effort.path == spleen.effort_log_path and parts.dataset.effort_chart.log is parts.dataset.effort
    assert Settings().last_project() == "Spleen CT"
    # back through File > Switch project
    [act] = [a for a in parts.window.project_menu.actions() if a.text() == "Hippocampus (MRI)"]
    act.trigger()
    assert parts.session.project.folder == hippo.folder and _labels(parts)[1][0] == "anterior"
    assert "bundled-default" in parts.inference.panel.model_label.text() and parts.inference.panel.run_button.isEnabled()
    assert Settings().last_project() == "Hippocampus (MRI)"


def test_switching_is_refused_while_a_job_runs_and_asks_about_an_unsaved_mask(qtbot, segloop_app):
    parts = segloop_app
    parts.session.store.create("Spleen CT", modality="CT", labels={1: "spleen"})
    parts.projects.refresh_list()
    release = threading.Event()
    parts.controller.workers.start(release.wait, 20.0, description="Fine-tuning")
    try:
        assert not parts.projects.switch_to("Spleen CT")
        assert parts.session.name == "Hippocampus (MRI)"
        assert "Fine-tuning" in parts.projects.last_refusal and "cancel" in parts.projects.last_refusal
        box = parts.window.findChild(QtWidgets.QMessageBox, "switch_refused_box")
        assert box is not None and box.isVisible()
        _click(qtbot, box.button(QtWidgets.QMessageBox.StandardButton.Ok))
        assert parts.window.findChild(QtWidgets.QComboBox, "project_combo").currentText() == "Hippocampus (MRI)"
    finally:
        release.set()
        _idle(qtbot, parts)
    # an unsaved mask: the user is asked; keeping it keeps the project
    _open(qtbot, parts, CASES[0], HIPPO / "labelsTr" / CASES[0].name)
    edited = parts.document.mask.copy()
    edited[edited == 1] = 2
    parts.document.replace_mask(edited, dirty=True)
    asked = []
    parts.controller.ask_discard_changes = lambda: asked.append(1) or False
    assert not parts.projects.switch_to("Spleen CT") and asked == [1] and parts.session.name == "Hippocampus (MRI)"
    assert parts.document.dirty and "unsaved" in parts.projects.last_refusal
    # discarding: the mask is read again from its file, then the project switches
    parts.controller.ask_discard_changes = lambda: True
    assert parts.projects.switch_to("Spleen CT") and parts.session.name == "Spleen CT"
    _idle(qtbot, parts)
    assert not parts.document.dirty and 1 in np.unique(parts.document.mask)


def test_a_project_without_a_model_says_what_to_do(qtbot, segloop_app):
    parts = segloop_app
    parts.session.store.create("Hippo from scratch", modality="MR", labels={1: "head", 2: "tail"})
    parts.projects.refresh_list()
    assert parts.projects.switch_to("Hippo from scratch")
    ip, tp = parts.inference.panel, parts.training.panel
    assert ip.model_label.text() == ("No model yet: add 3 more corrected cases, then Train first model "
                                     "(Fine-tune panel).")
    assert tp.first_model_button.isVisible() and not tp.first_model_button.isEnabled()
    assert not tp.start_button.isEnabled() and "Add 3 more" in tp.first_model_button.toolTip()
    _open(qtbot, parts, CASES[0], HIPPO / "labelsTr" / CASES[0].name)
    assert not ip.run_button.isEnabled()
    _click(qtbot, ip.add_button)
    qtbot.waitUntil(lambda: parts.dataset.last_add is not None and parts.dataset.worker is None, timeout=20_000)
    assert ip.model_label.text().startswith("No model yet: add 2 more corrected cases")
    text = ip.add_label.text()
    assert "to project Hippo from scratch" in text and "no model prediction to compare with" in text
    assert "no validation yet" in text  # fewer than 2 validation cases
    assert len(parts.session.dataset()) == 1


def test_a_ct_scan_in_an_mr_project_asks_before_running_or_adding(qtbot, segloop_app, tiny_checkpoint):
    parts = segloop_app
    ip = parts.inference.panel
    parts.inference.set_requested_model(str(tiny_checkpoint))
    _open(qtbot, parts, CT)
    assert parts.controller.scan_checks.known(parts.document.image)  # checked by the load worker
    shown = []
    parts.learning.guard.question_shown.connect(shown.append)
    _click(qtbot, ip.run_button)
    assert len(shown) == 1 and parts.inference.worker is None
    box = shown[0]
    assert box.objectName() == "modality_warning" and "Hounsfield" in box.text() and "MR" in box.text()
    _click(qtbot, box.findChild(QtWidgets.QPushButton, "modality_cancel_button"))
    assert parts.inference.worker is None and parts.learning.prediction.mask is None
    _click(qtbot, ip.run_button)
    assert len(shown) == 2
    _click(qtbot, shown[1].findChild(QtWidgets.QPushButton, "modality_anyway_button"))
    assert parts.inference.worker is not None  # never a silent result: only after "Run anyway"
    qtbot.waitUntil(lambda: parts.inference.worker is None, timeout=30_000)
    assert parts.learning.prediction.mask is not None
    # adding the case asks too; Cancel adds nothing
    _click(qtbot, ip.add_button)
    assert len(shown) == 3 and "Add" in shown[2].informativeText()
    _click(qtbot, shown[2].findChild(QtWidgets.QPushButton, "modality_cancel_button"))
    _idle(qtbot, parts)
    assert parts.dataset.last_add is None and len(parts.session.dataset()) == 0


def _paint_label_3(parts):
    """Label 3 "tail end" painted with the brush over part of the mask (one undo step)."""
    doc, tools = parts.document, parts.editing.tools
    doc.labels.add("tail end", (255, 128, 0), value=3)
    tools.tool = "brush"
    tools.brush.label, tools.brush.size = 3, 4.0
    k = doc.cursor[0]
    tools.press(0, k, 10.0, 10.0)
    tools.move(0, k, 10.0, 18.0)
    assert tools.release() and 3 in np.unique(doc.mask)


def test_labels_the_project_lacks_are_never_remapped(qtbot, segloop_app):
    parts = segloop_app
    ip = parts.inference.panel
    _open(qtbot, parts, CASES[1], HIPPO / "labelsTr" / CASES[1].name)
    _paint_label_3(parts)
    dialogs = []
    # Cancel: nothing is added, the panel says why
    _click(qtbot, ip.add_button)
    qtbot.waitUntil(lambda: parts.dataset.dialog is not None, timeout=20_000)
    dlg = parts.dataset.dialog
    dialogs.append(dlg)
    assert "3 (tail end)" in dlg.findChild(QtWidgets.QLabel, "unknown_labels_text").text()
    assert dlg.table.item(0, 2).text() == "#ff8000"  # the document's colour for it
    _click(qtbot, dlg.cancel_button)
    _idle(qtbot, parts)
    assert parts.dataset.last_add is None and len(parts.session.dataset()) == 0
    assert "Not added" in ip.add_label.text() and "tail end" in ip.add_label.text()
    assert parts.session.project.labels == LABELS
    # Add label(s) to project: a new schema version, then the case is added with its label 3
    _click(qtbot, ip.add_button)
    qtbot.waitUntil(lambda: parts.dataset.dialog is not None, timeout=20_000)
    _click(qtbot, parts.dataset.dialog.add_button)
    qtbot.waitUntil(lambda: parts.dataset.last_add is not None and not parts.controller.workers.is_busy,
                    timeout=30_000)
    project = parts.session.project
    assert project.labels == {**LABELS, 3: "tail end"} and project.schema_version == 2
    assert project.colours[3] == (255, 128, 0)
    ds = parts.session.dataset()
    assert ds.labels[3] == "tail end" and len(ds) == 1
    _, label, _ = ds.load_case(parts.dataset.last_add.case_id)
    assert np.array_equal(label, parts.document.mask)
    assert _labels(parts)[3] == ("tail end", (255, 128, 0))


def test_the_open_project_cannot_be_deleted_another_goes_to_the_trash(qtbot, segloop_app):
    parts = segloop_app
    parts.session.store.create("Old project", modality="US", labels={1: "cyst"})
    parts.projects.refresh_list()
    parts.window.named_actions["delete_project"].trigger()
    dlg = parts.projects.delete_dialog
    assert dlg is not None and dlg.combo.currentText() == "Old project"  # not the open one by default
    dlg.select("Hippocampus (MRI)")
    assert not dlg.delete_button.isEnabled()
    assert dlg.message.text() == "Project 'Hippocampus (MRI)' is open: switch to another project before deleting it."
    assert parts.projects.delete_project("Hippocampus (MRI)", dlg) is None  # refused even when asked directly
    assert parts.session.store.exists("Hippocampus (MRI)")
    dlg.select("Old project")
    asked = []
    parts.projects.ask_delete_project = lambda name: asked.append(name) or True
    _click(qtbot, dlg.delete_button)
    _idle(qtbot, parts)
    assert asked == ["Old project"] and not parts.session.store.exists("Old project")
    trash = parts.session.store.root / ".trash"
    assert [p.name.startswith("Old project") for p in trash.iterdir()] == [True]
    assert "Old project" not in [a.text() for a in parts.window.project_menu.actions()]
    assert "Moved 'Old project'" in dlg.message.text()


def _new_project_dialog(parts):
    parts.window.named_actions["new_project"].trigger()
    dlg = parts.projects.new_dialog
    assert dlg is not None and dlg.isVisible()
    return dlg


def _create_and_wait_for_error(qtbot, parts, dlg):
    _click(qtbot, dlg.create_button)
    qtbot.waitUntil(lambda: parts.projects.create_worker is None, timeout=20_000)
    return dlg.error_label.text()


def _type_label(qtbot, dlg, row, name):
    """Click the name cell, F2, type ``name``, Enter (a real edit of the table)."""
    table = dlg.table
    rect = table.visualRect(table.model().index(row, 1))
    qtbot.mouseClick(table.viewport(), LEFT, pos=rect.center())
    qtbot.keyClick(table, QtCore.Qt.Key.Key_F2)
    editor = table.viewport().findChild(QtWidgets.QLineEdit)
    assert editor is not None and table.state() == QtWidgets.QAbstractItemView.State.EditingState
    editor.selectAll()
    qtbot.keyClicks(editor, name)
    qtbot.keyClick(editor, QtCore.Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: table.item(row, 1).text() == name)  # the delegate commits on a queued call


def test_the_new_project_dialog_shows_the_stores_errors(qtbot, segloop_app, tmp_path):
    parts = segloop_app
    dlg = _new_project_dialog(parts)
    qtbot.keyClicks(dlg.name_edit, "hippocampus (mri)")
    _click(qtbot, dlg.add_button)
    _type_label(qtbot, dlg, 0, "head")
    assert dlg.labels() == [("1", "head", (255, 0, 0))]
    assert "already exists" in _create_and_wait_for_error(qtbot, parts, dlg)  # names ignore case
    dlg.name_edit.clear()
    qtbot.keyClicks(dlg.name_edit, "knee/left")
    text = _create_and_wait_for_error(qtbot, parts, dlg)
    assert "'/'" in text and "folder name" in text
    dlg.name_edit.clear()
    qtbot.keyClicks(dlg.name_edit, "Hippo bundled")
    dlg.start_combo.setCurrentIndex(dlg.start_combo.findData("default"))
    text = _create_and_wait_for_error(qtbot, parts, dlg)
    assert "the model calls label 1 'anterior', not 'head'" in text and "bundled default model" in text
    dlg.start_combo.setCurrentIndex(dlg.start_combo.findData("empty"))
    dlg.table.setRowCount(0)
    assert "needs labels" in _create_and_wait_for_error(qtbot, parts, dlg)
    dlg.start_combo.setCurrentIndex(dlg.start_combo.findData("folder"))
    _click(qtbot, dlg.create_button)
    assert "choose the checkpoint folder" in dlg.error_label.text()
    # labels from an ITK-SNAP file; then the project is created and opened
    (tmp_path / "labels.txt").write_text('0 0 0 0 0 0 0 "Clear Label"\n1 10 20 30 1 1 1 "head"\n'
                                         '2 40 50 60 1 1 1 "tail"\n')
    assert dlg.import_labels(tmp_path / "labels.txt")
    assert dlg.labels() == [("1", "head", (10, 20, 30)), ("2", "tail", (40, 50, 60))]
    dlg.start_combo.setCurrentIndex(dlg.start_combo.findData("empty"))
    _click(qtbot, dlg.create_button)
    qtbot.waitUntil(lambda: parts.session.name == "Hippo bundled", timeout=20_000)
    _idle(qtbot, parts)
    assert parts.session.name == "Hippo bundled" and parts.session.project.colours == {1: (10, 20, 30), 2: (40, 50, 60)}
    assert parts.projects.new_dialog is None


def test_dice_is_shown_honestly_in_the_versions_table_and_the_add_case_text():
    from desktop_app import learning_jobs as jobs
    from desktop_app.controllers.dataset import add_result_text
    from desktop_app.state.validation_info import completed_metrics, version_val_cases
    from desktop_app.widgets.versions_panel import dice_cells
    from unet_engine.registry.versions import VersionInfo

    names = ["head", "tail"]
    # a fine-tune's final metrics: no val_cases, a None Dice for a label in no validation case
    info = VersionInfo("v0002", HIPPO, metrics={"val_dice": {"head": 0.8, "tail": None}, "val_mean_dice": 0.8},
                       dataset={"cases": [{"id": "a", "split": "val"}, {"id": "b", "split": "val"},
                                          {"id": "c", "split": "train"}]}, config={"val_max_cases": 8})
    metrics = completed_metrics(info.metrics, version_val_cases(info))
    assert metrics["val_cases"] == 2 and metrics["val_na_labels"] == ["tail"]
    assert dice_cells(metrics, names) == ["0.800", "n/a", "0.800"]
    info.config = {"val_max_cases": 1}  # scored on 1 case only
    assert dice_cells(completed_metrics(info.metrics, version_val_cases(info)), names) == ["—", "—", "no validation yet"]
    # the add-case text: n/a for a label in neither mask, and whether fine-tunes can be validated yet
    res = jobs.AddResult("case1", HIPPO, voxels_changed=10, voxels_total=1000, dice={"head": 0.9, "tail": None},
                         split="val", cases=3, val_cases=1)
    text = add_result_text(res, "v0001", "Hippo")
    assert "head 0.900, tail n/a" in text and "1.000" not in text
    assert "1 for validation: no validation yet" in text
    res.val_cases = 2
    assert "no validation yet" not in add_result_text(res, "v0001", "Hippo")


def test_a_project_can_start_from_a_checkpoint_folder(qtbot, segloop_app, tiny_checkpoint):
    parts = segloop_app
    dlg = _new_project_dialog(parts)
    qtbot.keyClicks(dlg.name_edit, "Hippo tiny")
    dlg.start_combo.setCurrentIndex(dlg.start_combo.findData("folder"))
    qtbot.keyClicks(dlg.checkpoint_edit, str(tiny_checkpoint))
    _click(qtbot, dlg.create_button)  # labels left empty: the model's are taken; the copy runs in a worker
    qtbot.waitUntil(lambda: parts.session.name == "Hippo tiny", timeout=30_000)
    _idle(qtbot, parts)
    project = parts.session.project
    assert project.labels == LABELS and parts.session.registry.active == "v0001"
    assert parts.session.model_source() == "active version"
    assert "Project Hippo tiny: v0001 (active version)" in parts.inference.panel.model_label.text()
    assert parts.versions.panel.row_of("v0001") >= 0 and not parts.training.panel.first_model_button.isVisible()
