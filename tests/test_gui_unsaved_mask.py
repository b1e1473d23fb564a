"""The unsaved-mask question offers Save / Discard / Cancel: Save writes the mask the normal
way and then goes on; a save that fails or is cancelled goes nowhere."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from tests.train_helpers import HIPPO
from unet_engine.io.volume_io import read_mask

CASE = "hippocampus_320.nii.gz"
OTHER = HIPPO / "imagesTr" / "hippocampus_221.nii.gz"


@pytest.fixture
def edited_case(qtbot, segloop_app, tmp_path):
    """A scan and its mask file (copies in tmp_path) open, with one unsaved brush edit."""
    parts = segloop_app
    folder = tmp_path / "case"
    folder.mkdir()
    scan = shutil.copy(HIPPO / "imagesTr" / CASE, folder / "image.nii.gz")
    label = shutil.copy(HIPPO / "labelsTr" / CASE, folder / "label.nii.gz")
    _open(qtbot, parts, scan, mask=label)
    doc = parts.document
    mask = doc.mask.copy()
    voxel = doc.cursor
    mask[voxel] = 2 if mask[voxel] != 2 else 1
    parts.editing.history.apply_full_mask(mask, "Brush stroke")
    assert doc.dirty
    return parts, folder, voxel, int(mask[voxel])


def _open(qtbot, parts, path, mask=None):
    parts.controller.open_scan(path, mask=mask)
    qtbot.waitUntil(lambda: _showing(parts, path) and not parts.controller.workers.is_busy, timeout=20_000)


def _showing(parts, path) -> bool:
    vol = parts.document.image
    return vol is not None and vol.source_path is not None and str(vol.source_path) == str(path)


def answer_unsaved_box(parts, choice: str, seen: list) -> None:
    """The app's real question, once (the segloop_app fixture answers "Discard" without a box,
    as its teardown closes the window): click ``choice`` when the box is up (it runs its own
    event loop)."""
    from desktop_app.controller import Controller

    def ask_once():
        parts.controller.ask_discard_changes = lambda: True
        QtCore.QTimer.singleShot(0, click)
        return Controller.ask_discard_changes(parts.controller)

    def click() -> None:
        box = QtWidgets.QApplication.activeModalWidget()
        if not isinstance(box, QtWidgets.QMessageBox):
            QtCore.QTimer.singleShot(10, click)  # not up yet
            return
        texts = {b.text().replace("&", ""): b for b in box.buttons()}
        seen.append((box.objectName(), box.text(), sorted(texts)))
        box.done(0) if choice not in texts else texts[choice].click()  # no such button: close, the test fails

    parts.controller.ask_discard_changes = ask_once


def test_save_writes_the_mask_then_opens_the_other_scan(qtbot, edited_case):
    parts, folder, voxel, value = edited_case
    seen: list = []
    answer_unsaved_box(parts, "Save", seen)
    with qtbot.waitSignal(parts.controller.mask_saved, timeout=20_000):
        assert parts.controller.open_scan(OTHER) is None  # waits for the save
    assert seen == [("unsaved_mask_box", "The mask has unsaved changes. Save them first?",
                     ["Cancel", "Discard", "Save"])]
    qtbot.waitUntil(lambda: _showing(parts, OTHER) and not parts.controller.workers.is_busy, timeout=20_000)
    saved = read_mask(folder / "label.nii.gz", like=_volume(folder))
    assert int(saved[voxel]) == value  # the edit is in the file, written by the normal save
    assert not parts.document.dirty


def _volume(folder):
    from unet_engine.io.volume_io import read_volume

    return read_volume(folder / "image.nii.gz")


def test_a_failed_save_does_not_open_the_other_scan(qtbot, edited_case):
    parts, folder, voxel, _value = edited_case
    (folder / "label.nii.gz").unlink()
    (folder / "label.nii.gz").mkdir()  # a folder where the mask file was: the save cannot write it
    seen: list = []
    answer_unsaved_box(parts, "Save", seen)
    with qtbot.waitSignal(parts.controller.error_shown, timeout=20_000):
        assert parts.controller.open_scan(OTHER) is None
    parts.controller.workers.wait_idle(20_000)
    assert seen and seen[0][0] == "unsaved_mask_box"
    assert _showing(parts, folder / "image.nii.gz") and parts.document.dirty  # still the edited case
    assert parts.controller.last_error[0] == "Could not save the mask"
    box = parts.window.findChild(QtWidgets.QMessageBox, "error_box")
    assert box is not None and box.isVisible()
    box.close()


def test_cancelled_save_as_does_not_open_the_other_scan(qtbot, segloop_app, monkeypatch):
    parts = segloop_app
    _open(qtbot, parts, HIPPO / "imagesTr" / CASE)  # no mask file: Save asks for a name
    mask = parts.document.mask.copy()
    mask[parts.document.cursor] = 1
    parts.editing.history.apply_full_mask(mask, "Brush stroke")
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: asked.append(a) or ("", ""))  # the user cancels Save As
    parts.controller.ask_discard_changes = lambda: "save"
    assert parts.controller.open_scan(OTHER) is None
    assert asked  # Save went the normal way: Save As, as the mask has no file yet
    assert not parts.controller.workers.is_busy
    assert _showing(parts, HIPPO / "imagesTr" / CASE) and parts.document.dirty
    parts.controller.ask_discard_changes = lambda: True  # the fixture's teardown closes the window: discard


def test_discard_and_cancel_still_work(qtbot, edited_case):
    parts, folder, _voxel, _value = edited_case
    seen: list = []
    answer_unsaved_box(parts, "Cancel", seen)
    assert parts.controller.open_scan(OTHER) is None
    assert _showing(parts, folder / "image.nii.gz") and parts.document.dirty
    before = (folder / "label.nii.gz").read_bytes()
    answer_unsaved_box(parts, "Discard", seen)
    _open(qtbot, parts, OTHER)
    assert [s[0] for s in seen] == ["unsaved_mask_box", "unsaved_mask_box"]
    assert (folder / "label.nii.gz").read_bytes() == before  # nothing written


def test_save_on_close_saves_then_closes(qtbot, edited_case):
    parts, folder, voxel, value = edited_case
    seen: list = []
    answer_unsaved_box(parts, "Save", seen)
    parts.window.close()
    qtbot.waitUntil(lambda: not parts.window.isVisible(), timeout=20_000)
    assert seen and seen[0][0] == "unsaved_mask_box"
    saved = read_mask(folder / "label.nii.gz", like=_volume(folder))
    assert int(saved[voxel]) == value
    assert np.array_equal(saved, parts.document.mask)


def test_save_then_switch_project(qtbot, edited_case):
    parts, folder, voxel, value = edited_case
    parts.session.store.create("Spleen CT", modality="CT", labels={1: "spleen"})
    parts.projects.refresh_list()
    seen: list = []
    answer_unsaved_box(parts, "Save", seen)
    with qtbot.waitSignal(parts.projects.project_opened, timeout=20_000):
        assert not parts.projects.switch_to("Spleen CT")  # not yet: the mask is saved first
        assert parts.session.name == "Hippocampus (MRI)"
    assert parts.session.name == "Spleen CT" and seen and seen[0][0] == "unsaved_mask_box"
    assert int(read_mask(folder / "label.nii.gz", like=_volume(folder))[voxel]) == value
