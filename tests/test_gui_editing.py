"""Mask correction in the full main window: real mouse events on the views paint exactly
what the ToolController paints for the same stroke; eraser, fill, undo/redo actions and
shortcuts, tool panel -> BrushSettings, label editor, brush outline, one-shot ops."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from conftest import DATA
from desktop_app.editing import EditingController, editing_controller
from desktop_app.state.document import Document
from desktop_app.state.geometry import plane_axes
from desktop_app.state.history import History
from desktop_app.state.label_io import read_itksnap_labels
from desktop_app.state.tools import ToolController

SCAN = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz"  # 148x132x20, 0.79 x 0.79 x 5 mm, RAS (views flip)
LABEL = DATA / "io" / "ct_spleen_nifti" / "label.nii.gz"
LEFT = QtCore.Qt.MouseButton.LeftButton
NOMOD = QtCore.Qt.KeyboardModifier.NoModifier
SHIFT = QtCore.Qt.KeyboardModifier.ShiftModifier
CTRL = QtCore.Qt.KeyboardModifier.ControlModifier


@pytest.fixture(autouse=True)
def _spleen_project(_segloop_home):
    """The app opens a CT project labelled like the CT spleen scan these tests edit (a scan's
    label table starts from the open project's labels: here only 1 "spleen")."""
    from desktop_app.settings import Settings
    from unet_engine.projects import ProjectStore

    ProjectStore().create("Spleen CT", modality="CT", labels={1: "spleen"})
    Settings().set_last_project("Spleen CT")


@pytest.fixture(autouse=True)
def _no_autosave_thread_left():
    """The journal's thread must stop when the window closes (qtbot closes it)."""
    yield
    left = [t for t in threading.enumerate() if t.name == "segloop-autosave" and t.is_alive()]
    assert not left, "autosave thread still running after the test"


# ----- helpers ---------------------------------------------------------------------------------
def open_scan(parts, scan=SCAN, mask=None) -> EditingController:
    assert parts.controller.open_scan(scan, mask=mask) is not None
    assert parts.controller.workers.wait_idle(20_000)
    QtWidgets.QApplication.processEvents()
    assert parts.document.image is not None and parts.controller.last_error is None
    ed = editing_controller(parts.window)
    assert ed is not None
    return ed


def widget_pos(view, kji) -> QtCore.QPoint:
    """Viewport position of voxel ``kji``'s centre as drawn in ``view``."""
    g = view.geometry_info
    x, y = g.crosshair_mm(kji)
    return view.display_to_widget(y / g.row_spacing, x / g.col_spacing)


def drag(qtbot, view, points, modifier=NOMOD) -> None:
    """Press on the first voxel, move through the others, release on the last."""
    vp = view.canvas.viewport()
    pos = [widget_pos(view, p) for p in points]
    qtbot.mousePress(vp, LEFT, modifier, pos[0])
    for p in pos[1:]:
        qtbot.mouseMove(vp, p)
    qtbot.mouseRelease(vp, LEFT, modifier, pos[-1])


def reference(parts, start: np.ndarray, strokes, brush, tool="brush") -> np.ndarray:
    """The same strokes through a ToolController on a copy: ``strokes`` is a list of
    ``(axis, [kji, ...], erase)``; points are voxel centres."""
    doc = Document()
    doc.set_image(parts.document.image, start.copy())
    ctl = ToolController(doc, History(doc), replace(brush))
    ctl.tool = tool
    for axis, points, erase in strokes:
        ra, ca = plane_axes(axis)
        p0 = points[0]
        ctl.press(axis, p0[axis], p0[ra], p0[ca], erase=erase)
        for p in points[1:]:
            ctl.move(axis, p[axis], p[ra], p[ca])
        ctl.release()
    return doc.mask


def wait_op(qtbot, ed) -> None:
    """Wait for a one-shot op (interpolate, fill holes, delete, merge) run in a worker."""
    qtbot.waitUntil(lambda: not ed.op_running, timeout=20_000)


def use_tool(ed, name: str) -> None:
    ed.tool_panel.tool_buttons[name].click()
    assert ed.tool_panel.tool == name


# ----- tests -------------------------------------------------------------------------------------
def test_app_builds_with_editing_panels_and_actions(segloop_app):
    parts = segloop_app
    ed = editing_controller(parts.window)
    assert isinstance(ed, EditingController)
    assert {"Tools", "Label editor"} <= set(parts.window.docks)
    a = parts.window.named_actions
    # the viewer's placeholder actions are reused, not duplicated
    assert ed.undo_action is a["undo"] and ed.redo_action is a["redo"]
    assert [s.toString() for s in a["redo"].shortcuts()] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    for name, key in (("tool_brush", "B"), ("tool_eraser", "E"), ("tool_fill", "F"), ("tool_navigate", "N"),
                      ("brush_smaller", "["), ("brush_larger", "]")):
        assert a[name].shortcut().toString() == key
    keys = [s.toString() for act in a.values() for s in act.shortcuts()]
    assert len(keys) == len(set(keys))  # no shortcut clash with the viewer's
    assert not a["undo"].isEnabled() and not a["redo"].isEnabled()
    dlg = parts.controller.show_shortcuts()
    assert any(r[1] == "Brush" and r[2] == "B" for r in dlg.rows())
    assert any(r[0] == "Mouse" and "Erase" in r[1] and "Shift" in r[2] for r in dlg.rows())
    dlg.close()


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_brush_stroke_by_mouse_paints_the_tool_controller_voxels(segloop_app, qtbot, plane):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    view = parts.grid.views[plane]
    axis = view.geometry_info.axis
    use_tool(ed, "brush")
    assert view.left_button_mode != "navigate"
    ed.tool_panel.size_spin.setValue(5)
    s = view.slice_index
    pts = {"axial": [(s, 60, 50), (s, 62, 70), (s, 80, 90)],
           "coronal": [(8, s, 40), (10, s, 60), (14, s, 70)]}[plane]
    start = doc.mask.copy()
    cursor_before = doc.cursor
    drag(qtbot, view, pts)
    want = reference(parts, start, [(axis, pts, False)], ed.tools.brush)
    assert (want != start).sum() > 100
    np.testing.assert_array_equal(doc.mask, want)
    assert doc.cursor == cursor_before  # paint mode: the left button does not move the crosshair
    assert 1 in doc.labels  # the painted value got a table entry (and a colour)
    assert parts.window.named_actions["undo"].text() == "Undo Brush stroke"
    assert parts.window.named_actions["undo"].isEnabled()
    assert ed.history.undo_count == 1  # one stroke = one undo entry
    # the overlay of the view shows the new voxels
    lut = np.asarray(doc.labels.lut(size=256))
    np.testing.assert_array_equal(view.overlay_item.image, lut[view.geometry_info.extract(doc.mask, s)])


def test_mm_square_3d_brush_settings_from_the_panel(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    tp, b = ed.tool_panel, ed.tools.brush
    tp.shape_combo.setCurrentIndex(tp.shape_combo.findData("square"))
    tp.unit_combo.setCurrentIndex(tp.unit_combo.findData("mm"))
    tp.size_spin.setValue(12.5)
    tp.mode_3d.setChecked(True)
    assert (b.shape, b.unit, b.size, b.mode) == ("square", "mm", 12.5, "3d")
    tp.paint_over_combo.setCurrentIndex(tp.paint_over_combo.findData("empty"))
    assert b.paint_over == "empty" and not tp.paint_over_label.isEnabled()
    tp.threshold_check.setChecked(True)
    tp.threshold_low.setValue(-50)
    tp.threshold_high.setValue(200)
    assert b.threshold == (-50.0, 200.0)
    lesion = ed.label_editor.add_label("Lesion")
    assert b.label == lesion.value == 2  # after the project's label 1 "spleen"
    view = parts.grid.views["axial"]
    s = view.slice_index
    use_tool(ed, "brush")
    start = parts.document.mask.copy()
    pts = [(s, 50, 40), (s, 70, 60)]
    drag(qtbot, view, pts)
    want = reference(parts, start, [(0, pts, False)], b)
    assert (want != start).sum() > 50
    assert np.any(want[s - 1] != start[s - 1])  # 12.5 mm sphere spans the neighbouring 5 mm slices
    np.testing.assert_array_equal(parts.document.mask, want)
    tp.threshold_check.setChecked(False)
    assert b.threshold is None
    # keyboard: [ and ] change the size, letters switch tools
    parts.window.activateWindow()
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_BracketRight)
    assert b.size == 13.5 and tp.size_spin.value() == 13.5
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_BracketLeft)
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_BracketLeft)
    assert b.size == 11.5
    for key, tool, ctl_tool in ((QtCore.Qt.Key.Key_E, "eraser", "eraser"), (QtCore.Qt.Key.Key_F, "fill", "fill"),
                                (QtCore.Qt.Key.Key_N, "navigate", "none"), (QtCore.Qt.Key.Key_B, "brush", "brush")):
        qtbot.keyClick(view.canvas, key)
        assert tp.tool == tool and ed.tools.tool == ctl_tool
        assert all(v.left_button_mode == ("navigate" if tool == "navigate" else "paint")
                   for v in parts.grid.views.values())


def test_eraser_tool_and_shift_drag_erase(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts, mask=LABEL)
    doc = parts.document
    assert 1 in doc.labels
    view = parts.grid.views["axial"]
    k = int(np.argmax((doc.mask == 1).sum(axis=(1, 2))))  # the slice with most spleen
    doc.set_cursor((k, *doc.cursor[1:]))
    jj, ii = np.nonzero(doc.mask[k] == 1)
    centre = (k, int(np.median(jj)), int(np.median(ii)))
    ed.tool_panel.size_spin.setValue(7)
    use_tool(ed, "brush")
    # Shift + left-drag with the brush erases
    start = doc.mask.copy()
    pts = [centre, (k, centre[1] + 4, centre[2] + 3)]
    drag(qtbot, view, pts, modifier=SHIFT)
    want = reference(parts, start, [(0, pts, True)], ed.tools.brush)
    assert (want != start).sum() > 20
    np.testing.assert_array_equal(doc.mask, want)
    assert parts.window.named_actions["undo"].text() == "Undo Eraser stroke"
    # the eraser tool
    use_tool(ed, "eraser")
    start = doc.mask.copy()
    pts = [(k, centre[1] - 6, centre[2]), (k, centre[1] - 6, centre[2] - 8)]
    drag(qtbot, view, pts)
    want = reference(parts, start, [(0, pts, False)], ed.tools.brush, tool="eraser")
    assert (want != start).sum() > 20
    np.testing.assert_array_equal(doc.mask, want)
    # Esc while dragging cancels the stroke
    use_tool(ed, "brush")
    start = doc.mask.copy()
    vp = view.canvas.viewport()
    qtbot.mousePress(vp, LEFT, NOMOD, widget_pos(view, (k, 20, 20)))
    qtbot.mouseMove(vp, widget_pos(view, (k, 20, 40)))
    assert (doc.mask != start).any()
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_Escape)
    qtbot.mouseRelease(vp, LEFT, NOMOD, widget_pos(view, (k, 20, 40)))
    np.testing.assert_array_equal(doc.mask, start)


def test_fill_tool_click_fills_the_region(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts, mask=LABEL)
    doc = parts.document
    view = parts.grid.views["axial"]
    k = view.slice_index
    lab = ed.label_editor.add_label("Background fill")
    assert ed.tools.brush.label == lab.value == 2
    ed.tool_panel.paint_over_combo.setCurrentIndex(ed.tool_panel.paint_over_combo.findData("empty"))
    use_tool(ed, "fill")
    start = doc.mask.copy()
    seed = (k, 5, 5)
    assert start[seed] == 0
    qtbot.mouseClick(view.canvas.viewport(), LEFT, NOMOD, widget_pos(view, seed))
    want = reference(parts, start, [(0, [seed], False)], ed.tools.brush, tool="fill")
    np.testing.assert_array_equal(doc.mask, want)
    assert (doc.mask[k] == 2).sum() > 0.5 * doc.mask[k].size
    np.testing.assert_array_equal(doc.mask[k] == 1, start[k] == 1)  # spleen untouched
    assert parts.window.named_actions["undo"].text() == "Undo Fill"


def test_undo_redo_by_actions_and_shortcuts(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc, a = parts.document, parts.window.named_actions
    view = parts.grid.views["axial"]
    s = view.slice_index
    use_tool(ed, "brush")
    m0 = doc.mask.copy()
    drag(qtbot, view, [(s, 40, 40), (s, 40, 70)])
    m1 = doc.mask.copy()
    drag(qtbot, view, [(s, 80, 40), (s, 90, 40)], modifier=NOMOD)
    m2 = doc.mask.copy()
    assert (m1 != m0).any() and (m2 != m1).any()
    a["undo"].trigger()
    np.testing.assert_array_equal(doc.mask, m1)
    assert a["redo"].isEnabled() and a["redo"].text() == "Redo Brush stroke"
    a["redo"].trigger()
    np.testing.assert_array_equal(doc.mask, m2)
    parts.window.activateWindow()
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_Z, CTRL)
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_Z, CTRL)
    np.testing.assert_array_equal(doc.mask, m0)
    assert not a["undo"].isEnabled() and a["undo"].text() == "Undo"
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_Z, CTRL | SHIFT)
    np.testing.assert_array_equal(doc.mask, m1)
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_Y, CTRL)
    np.testing.assert_array_equal(doc.mask, m2)
    assert not a["redo"].isEnabled()
    # the overlay follows undo
    a["undo"].trigger()
    lut = np.asarray(doc.labels.lut(size=256))
    np.testing.assert_array_equal(view.overlay_item.image, lut[view.geometry_info.extract(doc.mask, s)])


@pytest.mark.parametrize("size, unit, shape", [(5, "voxel", "round"), (4, "voxel", "square"), (9.0, "mm", "round")])
def test_brush_outline_shows_the_voxels_a_click_paints(segloop_app, qtbot, size, unit, shape):
    parts = segloop_app
    ed = open_scan(parts)
    tp = ed.tool_panel
    tp.shape_combo.setCurrentIndex(tp.shape_combo.findData(shape))
    tp.unit_combo.setCurrentIndex(tp.unit_combo.findData(unit))
    tp.size_spin.setValue(size)
    use_tool(ed, "brush")
    view = parts.grid.views["sagittal"]  # rows = k (5 mm), cols = j, both flipped here
    inter = ed.interactions["sagittal"]
    g = view.geometry_info
    s = view.slice_index
    kji = (10, 60, s)
    vp = view.canvas.viewport()
    # a point a little off the voxel centre (even sizes centre on the nearest corner)
    pos = widget_pos(view, kji) + QtCore.QPoint(1, 1)
    qtbot.mouseMove(vp, pos + QtCore.QPoint(7, 3))  # Qt drops a move to where the mouse already is
    qtbot.mouseMove(vp, pos)
    assert inter.cursor.isVisible()
    covered = inter.covered_voxels()
    start = parts.document.mask.copy()
    qtbot.mouseClick(vp, LEFT, NOMOD, pos)
    painted = np.argwhere(parts.document.mask[:, :, s] != start[:, :, s])
    assert {tuple(p) for p in painted.tolist()} == covered
    # the drawn path encloses exactly those voxels: its bounding box in display mm
    rect = inter.cursor.mapRectToParent(inter.cursor.path().boundingRect())
    rows, cols = painted[:, 0], painted[:, 1]  # k, j (state row/col of the sagittal view)
    n_k, n_j = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    sp = parts.document.image.spacing
    assert rect.height() == pytest.approx(n_k * sp[0]) and rect.width() == pytest.approx(n_j * sp[1])
    cx, cy = g.crosshair_mm(((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2, s))
    assert rect.center().x() == pytest.approx(cx) and rect.center().y() == pytest.approx(cy)
    # navigate mode hides it
    use_tool(ed, "navigate")
    assert not inter.cursor.isVisible()


def test_label_editor_add_rename_recolour_delete_merge(segloop_app, qtbot, tmp_path, monkeypatch):
    parts = segloop_app
    ed = open_scan(parts, mask=LABEL)
    doc, le = parts.document, ed.label_editor
    assert le.values() == [1]
    lab = le.add_label()
    assert lab.value == 2 and le.values() == [1, 2] and ed.tools.brush.label == 2
    # rename by editing the name cell, and by the method (what the dialog calls)
    item = le.tree.topLevelItem(le.values().index(2))  # the row of label 2
    item.setText(1, "Lesion")
    assert doc.labels[2].name == "Lesion"
    assert le.rename_label(1, "Spleen") and doc.labels[1].name == "Spleen"
    errors = []
    le.error.connect(lambda title, exc: errors.append(title))
    assert not le.rename_label(1, 'bad "quote"') and errors == ["Could not rename the label"]
    assert le.recolour_label(2, QtGui.QColor(10, 20, 30)) and doc.labels[2].colour == (10, 20, 30)
    # opacity: the button asks for a percentage (the dialog answered here), the method sets it
    monkeypatch.setattr(QtWidgets.QInputDialog, "getInt", lambda *a, **k: (25, True))
    le.set_active(2)
    assert le.buttons["opacity"].isEnabled()
    qtbot.mouseClick(le.buttons["opacity"], QtCore.Qt.MouseButton.LeftButton)
    assert doc.labels[2].opacity == pytest.approx(0.25)
    assert le.set_label_opacity(2, 100) and doc.labels[2].opacity == 1.0
    le.tree.topLevelItem(le.values().index(2)).setCheckState(2, QtCore.Qt.CheckState.Unchecked)  # its Show box
    assert not doc.labels[2].visible
    # paint some label 2, then merge 2 into 1 (undoable), then delete 1 (undoable)
    use_tool(ed, "brush")
    view = parts.grid.views["axial"]
    s = view.slice_index
    drag(qtbot, view, [(s, 30, 30), (s, 30, 50)])
    n1, n2 = int((doc.mask == 1).sum()), int((doc.mask == 2).sum())
    assert n2 > 0
    le.ask_merge_target = lambda source: 1
    le.set_active(2)
    le.buttons["merge"].click()
    wait_op(qtbot, ed)
    assert 2 not in doc.labels and (doc.mask == 1).sum() == n1 + n2 and ed.tools.brush.label == 1
    assert parts.window.named_actions["undo"].text() == "Undo Merge Lesion into Spleen"
    parts.window.named_actions["undo"].trigger()
    assert doc.labels[2].name == "Lesion" and (doc.mask == 2).sum() == n2
    le.set_active(1)
    le.buttons["delete"].click()
    wait_op(qtbot, ed)
    assert 1 not in doc.labels and not (doc.mask == 1).any() and le.values() == [2]
    assert ed.tools.brush.label == 2
    parts.window.named_actions["undo"].trigger()
    assert doc.labels[1].name == "Spleen" and (doc.mask == 1).sum() == n1
    # export / import ITK-SNAP label descriptions
    out = tmp_path / "labels.txt"
    assert le.export_labels(out)
    assert [(v.value, v.name) for v in read_itksnap_labels(out)] == [(1, "Spleen"), (2, "Lesion")]
    le.rename_label(1, "Renamed")
    out.write_text(out.read_text().replace('"Lesion"', '"Tumour"'))
    assert le.import_labels(out)
    assert doc.labels[1].name == "Spleen" and doc.labels[2].name == "Tumour" and le.values() == [1, 2]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    assert not le.import_labels(bad) and errors[-1] == "Could not import the labels"
    # the paint-over list follows the table
    names = [ed.tool_panel.paint_over_label.itemText(i) for i in range(ed.tool_panel.paint_over_label.count())]
    assert names == ["Clear (0)", "1: Spleen", "2: Tumour"]


def test_interpolate_and_fill_holes_buttons(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    ed.tool_panel.size_spin.setValue(9)
    use_tool(ed, "brush")
    view = parts.grid.views["axial"]
    for k in (4, 10):
        view.set_slice(k)
        drag(qtbot, view, [(k, 60, 60), (k, 60, 64)])
    assert [int(doc.mask[k].any()) for k in range(3, 12)] == [0, 1, 0, 0, 0, 0, 0, 1, 0]
    parts.grid.set_active("axial")
    ed.tool_panel.interpolate_button.click()
    wait_op(qtbot, ed)
    assert all(doc.mask[k].any() for k in range(4, 11)) and not doc.mask[3].any()
    assert parts.window.named_actions["undo"].isEnabled()
    parts.window.named_actions["undo"].trigger()
    assert not doc.mask[7].any()
    # punch a one-voxel hole with the eraser, then fill holes per slice
    k = 4
    view.set_slice(k)
    ed.tool_panel.size_spin.setValue(1)
    use_tool(ed, "eraser")
    qtbot.mouseClick(view.canvas.viewport(), LEFT, NOMOD, widget_pos(view, (k, 60, 62)))
    assert doc.mask[k, 60, 62] == 0 and doc.mask[k, 60, 61] == 1
    before = int((doc.mask[k] == 1).sum())
    ed.tool_panel.fill_holes_mode.setCurrentIndex(ed.tool_panel.fill_holes_mode.findData("2d"))
    ed.tool_panel.fill_holes_button.click()
    wait_op(qtbot, ed)
    assert doc.mask[k, 60, 62] == 1 and (doc.mask[k] == 1).sum() == before + 1
    assert parts.window.named_actions["undo"].text().startswith("Undo Fill holes")
