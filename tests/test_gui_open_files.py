"""Open every real test format through the controller and its worker; errors as dialogs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PySide6 import QtWidgets

from conftest import DATA
from gui_helpers import click_view
from unet_engine.io.volume_io import read_mask, read_volume

IO = DATA / "io"
# (scan, mask or None, orientation code of the file)
FORMATS = {
    "ct_spleen_nifti": ("ct_spleen_nifti/image.nii.gz", "ct_spleen_nifti/label.nii.gz", "RAS"),
    "mri_spinalcord_nifti": ("mri_spinalcord_nifti/image.nii.gz", "mri_spinalcord_nifti/label.nii.gz", "RAS"),
    "mri_brain_nrrd": ("mri_brain_nrrd/image.nrrd", "mri_brain_nrrd/label.nrrd", "LAS"),
    "mri_breast_nrrd": ("mri_breast_nrrd/image.nrrd", "mri_breast_nrrd/label.nrrd", "LPS"),
    "ct_dicom_3slice": ("ct_dicom_3slice/series", "ct_dicom_3slice/label_liver_spine.nrrd", "LPS"),
    "mr_hippocampus_dicom": ("mr_hippocampus_dicom/series", None, "LPS"),
}
RADIOLOGICAL = {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}  # left, right, top, bottom


def open_and_wait(parts, scan: Path, mask: Path | None = None) -> None:
    worker = parts.controller.open_scan(scan, mask=mask)
    assert worker is not None
    assert parts.window.busy_bar.isVisible()  # the read runs in a worker, with a busy bar
    assert parts.controller.workers.wait_idle(20_000)
    QtWidgets.QApplication.processEvents()
    assert not parts.window.busy_bar.isVisible()


def error_boxes(window) -> list[QtWidgets.QMessageBox]:
    return [w for w in window.findChildren(QtWidgets.QMessageBox) if w.objectName() == "error_box" and w.isVisible()]


def close_error_boxes(window) -> None:
    for box in error_boxes(window):
        box.done(0)
    QtWidgets.QApplication.processEvents()


@pytest.mark.parametrize("name", list(FORMATS))
def test_open_each_format_shows_the_voxels(segloop_app, qtbot, name):
    parts = segloop_app
    scan_rel, mask_rel, code = FORMATS[name]
    scan, mask = IO / scan_rel, (IO / mask_rel if mask_rel else None)
    open_and_wait(parts, scan, mask)
    assert parts.controller.last_error is None
    doc = parts.document
    ref = read_volume(scan)
    np.testing.assert_array_equal(doc.image.array, ref.array)
    assert doc.image.orientation_code() == code
    if mask is not None:
        np.testing.assert_array_equal(doc.mask, read_mask(mask, like=ref))
        assert doc.mask.any() and len(doc.labels) >= 1
    assert scan.name in parts.window.windowTitle()
    for plane, view in parts.grid.views.items():
        g = view.geometry_info
        np.testing.assert_array_equal(view.image_item.image, g.extract(ref.array, doc.cursor[g.axis]))
        letters = "".join(view.letter_labels[s].text() for s in ("left", "right", "top", "bottom"))
        assert letters == RADIOLOGICAL[plane], (name, plane)
    # click somewhere else in the axial view: the others follow; the status bar reads the voxel
    axial = parts.grid.views["axial"]
    k = doc.cursor[axial.geometry_info.axis]
    target = [k, 0, 0]
    target[axial.geometry_info.row_axis] = ref.shape[axial.geometry_info.row_axis] // 3
    target[axial.geometry_info.col_axis] = ref.shape[axial.geometry_info.col_axis] // 4
    click_view(qtbot, axial, kji=tuple(target))
    assert doc.cursor == tuple(target)
    kk, jj, ii = doc.cursor
    for plane in ("coronal", "sagittal"):
        view = parts.grid.views[plane]
        g = view.geometry_info
        np.testing.assert_array_equal(view.image_item.image, g.extract(ref.array, doc.cursor[g.axis]))
    text = parts.window.position_label.text()
    x, y, z = ref.voxel_to_world(doc.cursor)
    assert f"Voxel (i, j, k) = ({ii}, {jj}, {kk})" in text
    assert f"LPS = ({x:.1f}, {y:.1f}, {z:.1f}) mm" in text
    value = ref.array[kk, jj, ii]
    assert (f"Value {value:.4g}" if ref.array.dtype.kind == "f" else f"Value {value}") in text


def test_orientation_letters_for_lps_las_and_ras_files(segloop_app):
    parts = segloop_app
    for name, code in (("mri_breast_nrrd", "LPS"), ("mri_brain_nrrd", "LAS"), ("ct_spleen_nifti", "RAS")):
        open_and_wait(parts, IO / FORMATS[name][0])
        assert parts.document.image.orientation_code() == code
        for plane, view in parts.grid.views.items():
            shown = {s: view.letter_labels[s].text() for s in ("left", "right", "top", "bottom")}
            assert "".join(shown.values()) == RADIOLOGICAL[plane], (code, plane, shown)
        # patient left really is on screen right in the axial view
        vol, g = parts.document.image, parts.grid.views["axial"].geometry_info
        k = parts.document.cursor[0]
        left_edge = vol.voxel_to_world(g.kji(k, 0.5, 0.5))
        right_edge = vol.voxel_to_world(g.kji(k, 0.5, g.n_cols - 0.5))
        assert right_edge[0] > left_edge[0]  # LPS +x = patient left


def test_4d_and_corrupt_files_show_an_error_and_the_app_stays_usable(segloop_app, tmp_path):
    parts = segloop_app
    fmri = IO / "nifti_4d_fmri" / "image.nii.gz"
    with pytest.raises(Exception) as expected:
        read_volume(fmri)
    open_and_wait(parts, fmri)
    boxes = error_boxes(parts.window)
    assert len(boxes) == 1 and boxes[0].text() == str(expected.value)
    assert "4D" in boxes[0].text() and "Traceback" not in boxes[0].text()
    assert not parts.document.has_image
    close_error_boxes(parts.window)
    # a made-up 4D file with 3 time points (not an RGB photo either)
    four_d = tmp_path / "series4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3), np.int16), np.eye(4)), str(four_d))
    open_and_wait(parts, four_d)
    assert "4D" in parts.controller.last_error[1]
    close_error_boxes(parts.window)
    corrupt = tmp_path / "broken.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"not really a gzip stream" * 10)
    open_and_wait(parts, corrupt)
    title, text = parts.controller.last_error
    assert title == "Could not open the scan" and "broken.nii.gz" in text and "Traceback" not in text
    assert len(error_boxes(parts.window)) == 1
    close_error_boxes(parts.window)
    # still usable: a good file opens afterwards
    parts.controller.last_error = None
    good = IO / FORMATS["mri_breast_nrrd"][0]
    open_and_wait(parts, good)
    assert parts.controller.last_error is None and parts.document.image.shape == read_volume(good).shape
    # a mask on another grid is refused with a readable message
    open_mask = parts.controller.open_mask(IO / FORMATS["mri_brain_nrrd"][1])
    assert open_mask is not None and parts.controller.workers.wait_idle(10_000)
    assert "does not line up" in parts.controller.last_error[1]
    close_error_boxes(parts.window)


def test_save_mask_formats_and_never_over_the_scan(segloop_app, tmp_path):
    parts = segloop_app
    scan = IO / FORMATS["mri_breast_nrrd"][0]
    open_and_wait(parts, scan)
    doc = parts.document
    k, j, i = doc.cursor
    doc.mask[k, j - 2 : j + 2, i - 2 : i + 2] = 3
    doc.notify_mask_changed(((k, k + 1), (j - 2, j + 2), (i - 2, i + 2)))
    assert doc.dirty and parts.window.windowTitle().count("*") == 1
    for name, flt in (("a", "NIfTI (*.nii.gz)"), ("b", "NRRD (*.nrrd)"), ("c", "Slicer segmentation (*.seg.nrrd)")):
        worker = parts.controller.save_mask_as(tmp_path / name, chosen_filter=flt)
        assert worker is not None and parts.controller.workers.wait_idle(10_000)
        saved = doc.mask_path
        assert saved.name.startswith(name) and saved.exists() and not doc.dirty
        np.testing.assert_array_equal(read_mask(saved, like=doc.image), doc.mask)
    # NIfTI and NRRD keep the label names in an ITK-SNAP label file beside them; .seg.nrrd in its header
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["a.label_description.txt", "a.nii.gz",
                                                            "b.label_description.txt", "b.nrrd", "c.seg.nrrd"]
    # Ctrl+S writes to the current mask file
    doc.mask[k, j, i] = 1
    doc.notify_mask_changed(((k, k + 1), (j, j + 1), (i, i + 1)))
    parts.window.named_actions["save_mask"].trigger()
    assert parts.controller.workers.wait_idle(10_000) and not doc.dirty
    assert read_mask(tmp_path / "c.seg.nrrd", like=doc.image)[k, j, i] == 1
    # the source scan is never overwritten
    before = scan.read_bytes()
    assert parts.controller.save_mask_as(scan) is None
    assert "under another name" in parts.controller.last_error[1]
    assert scan.read_bytes() == before
    close_error_boxes(parts.window)


def test_drop_recent_files_and_dirty_prompt(segloop_app, tmp_path, monkeypatch):
    from PySide6 import QtCore, QtGui

    parts = segloop_app
    scan = IO / "ct_spleen_nifti" / "image.nii.gz"
    label = IO / "ct_spleen_nifti" / "label.nii.gz"

    def drop(paths):
        mime = QtCore.QMimeData()
        mime.setUrls([QtCore.QUrl.fromLocalFile(str(p)) for p in paths])
        ev = QtGui.QDropEvent(QtCore.QPointF(20, 20), QtCore.Qt.DropAction.CopyAction, mime,
                              QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
        parts.window.dropEvent(ev)
        assert parts.controller.workers.wait_idle(10_000)

    drop([scan])
    assert parts.document.image.source_path.name == "image.nii.gz" and not parts.document.mask.any()
    drop([label])  # named like a mask: opens over the scan
    assert parts.document.mask.any() and parts.document.mask_path.name == "label.nii.gz"
    recent = [a.toolTip() for a in parts.window.recent_menu.actions()]
    assert recent == [str(scan.resolve())]
    # unsaved edits: the user is asked before the scan is replaced; "Cancel" keeps it
    parts.document.notify_mask_changed(None)
    asked = []
    parts.controller.ask_discard_changes = lambda: asked.append(1) or False
    assert parts.controller.open_scan(IO / FORMATS["mri_breast_nrrd"][0]) is None
    assert asked and parts.document.image.source_path.name == "image.nii.gz"
    parts.controller.ask_discard_changes = lambda: True
    parts.window.recent_menu.actions()[0].trigger()
    assert parts.controller.workers.wait_idle(10_000)
    assert not parts.document.dirty and not parts.document.mask.any()


def test_label_names_come_from_the_defaults_not_the_previous_scan(segloop_app):
    from desktop_app.state.labels import Label

    parts = segloop_app
    spleen, brain = FORMATS["ct_spleen_nifti"], FORMATS["mri_brain_nrrd"]
    open_and_wait(parts, IO / spleen[0], IO / spleen[1])
    parts.document.labels.rename(1, "Spleen")
    assert "Label 1: Spleen" in parts.window.position_label.text() or parts.document.mask[parts.document.cursor] == 0
    open_and_wait(parts, IO / brain[0], IO / brain[1])
    assert parts.document.labels[1].name == parts.session.project.labels[1]  # the open project's name, not "Spleen"
    parts.controller.set_default_labels([Label(1, "Tumour", (0, 200, 0))])
    assert parts.document.labels[1].name == "Tumour"
    assert [parts.overlay_panel.label_list.item(0).text()] == ["Tumour"]
    open_and_wait(parts, IO / spleen[0], IO / spleen[1])
    assert parts.document.labels[1].name == "Tumour" and parts.document.labels[1].colour == (0, 200, 0)
    lut = parts.document.labels.lut()
    np.testing.assert_array_equal(parts.grid.views["axial"].overlay_item.image,
                                  lut[parts.grid.views["axial"].geometry_info.extract(parts.document.mask,
                                                                                      parts.document.cursor[0])])


def test_label_names_and_colours_survive_save_and_reopen(segloop_app, tmp_path):
    """Issue 16: label 1 renamed "spleen", saved as NIfTI, comes back as "spleen" (not the
    project's name nor "Label 1"), whether the mask is reopened with its scan or over it."""
    from desktop_app.state.labels import Label
    from desktop_app.widgets.label_editor import COL_NAME

    parts = segloop_app
    scan, label = IO / FORMATS["ct_spleen_nifti"][0], IO / FORMATS["ct_spleen_nifti"][1]
    open_and_wait(parts, scan, label)
    doc, editor, status = parts.document, parts.editing.label_editor, parts.window.statusBar()
    project_name = doc.labels[1].name
    assert project_name == parts.session.project.labels[1] and project_name.casefold() != "spleen"
    editor._item(1).setText(COL_NAME, "spleen")  # the user edits the name in the label editor
    assert editor.recolour_label(1, (12, 34, 56))
    assert doc.labels[1].name == "spleen"

    worker = parts.controller.save_mask_as(tmp_path / "case", chosen_filter="NIfTI (*.nii.gz)")
    assert worker is not None and parts.controller.workers.wait_idle(10_000)
    saved, side = tmp_path / "case.nii.gz", tmp_path / "case.label_description.txt"
    assert doc.mask_path == saved and not doc.dirty and parts.controller.last_error is None
    assert '    1    12   34   56        1  1  1    "spleen"' in side.read_text()

    def shown() -> tuple[list[str], list[str]]:
        tree = [editor.tree.topLevelItem(n).text(COL_NAME) for n in range(editor.tree.topLevelItemCount())]
        overlay = [parts.overlay_panel.label_list.item(n).text() for n in range(parts.overlay_panel.label_list.count())]
        return tree, overlay

    # reopen the scan with its mask: the scan starts from the project's labels, the file's names win
    open_and_wait(parts, IO / FORMATS["mri_brain_nrrd"][0])
    assert doc.labels[1].name == project_name
    open_and_wait(parts, scan, saved)
    assert (doc.labels[1].name, doc.labels[1].colour) == ("spleen", (12, 34, 56))
    assert shown()[0][0] == "spleen" and shown()[1][0] == "spleen"
    assert f"label 1 is 'spleen' (was {project_name!r})" in status.currentMessage()
    lut = doc.labels.lut()
    assert tuple(lut[1][:3]) == (12, 34, 56)

    # File > Open mask over a scan whose table names label 1 otherwise (a model's card)
    parts.controller.set_default_labels([Label(1, "Liver", (200, 0, 0))])
    assert doc.labels[1].name == "Liver"
    assert parts.controller.open_mask(saved) is not None and parts.controller.workers.wait_idle(10_000)
    QtWidgets.QApplication.processEvents()
    assert (doc.labels[1].name, doc.labels[1].colour) == ("spleen", (12, 34, 56))
    assert shown()[0] == shown()[1] == [lab.name for lab in doc.labels] and shown()[0][0] == "spleen"
    assert parts.controller.last_error is None

    # a damaged label file: the mask still opens, with the table's names, and the status bar says why
    side.write_text('# ITK-SnAP Label Description File\n    1   255    0    0        1  1  1    spleen\n')
    parts.controller.set_default_labels([Label(1, "Liver", (200, 0, 0))])
    assert parts.controller.open_mask(saved) is not None and parts.controller.workers.wait_idle(10_000)
    QtWidgets.QApplication.processEvents()
    assert doc.labels[1].name == "Liver" and doc.mask_path == saved and parts.controller.last_error is None
    assert "Label names not read" in status.currentMessage() and side.name in status.currentMessage()


def test_rgb_photo_opens_in_one_view_without_windowing(segloop_app, tmp_path):
    from PIL import Image

    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6
    rgb[5:10, 5:20, 1] = 200
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    open_and_wait(segloop_app, path)
    parts = segloop_app
    assert parts.controller.last_error is None and parts.document.image.channels == 3
    g_planes = [p for p, v in parts.grid.views.items() if v.geometry_info.n_slices == 1]
    assert parts.grid.layout_name == g_planes[0]
    view = parts.grid.views[g_planes[0]]
    assert view.image_item.image.shape[-1] == 3 and view.image_item.levels is None
    assert sorted(view.image_item.image.shape[:2]) == [30, 40]
