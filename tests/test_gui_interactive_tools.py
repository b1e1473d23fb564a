"""Grow from seeds, click to segment, lasso and smart brush in the full main window, with
real mouse and key events on the spleen CT: preview, accept (Enter) as one undo step,
discard (Esc), undo, and the bad inputs the user can cause."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from test_gui_editing import (  # noqa: F401 - fixtures are used by name
    LABEL,
    LEFT,
    NOMOD,
    SHIFT,
    _no_autosave_thread_left,
    _spleen_project,
    drag,
    open_scan,
    use_tool,
    widget_pos,
)
from unet_engine.io.volume_io import read_volume


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture
def spleen():
    """Reference spleen, its biggest axial slice and a point inside it."""
    ref = read_volume(LABEL).array > 0
    k = int(np.argmax(ref.sum(axis=(1, 2))))
    jj, ii = np.nonzero(ref[k])
    centre = (k, int(np.median(jj)), int(np.median(ii)))
    assert ref[centre]
    return ref, k, centre, (jj.min(), jj.max(), ii.min(), ii.max())


def show_slice(parts, k: int):
    """The axial view at slice ``k`` (the clicks and strokes below land on it)."""
    view = parts.grid.views["axial"]
    view.set_slice(k)
    QtWidgets.QApplication.processEvents()
    assert view.slice_index == k
    return view


def settle(parts) -> None:
    assert parts.controller.workers.wait_idle(30_000)
    QtWidgets.QApplication.processEvents()


def key(qtbot, parts, k) -> None:
    qtbot.keyClick(parts.window, k)
    QtWidgets.QApplication.processEvents()


def seed_spleen(parts, qtbot, spleen) -> None:
    """A label stroke through the spleen's middle and a background stroke around it."""
    ref, k, (_, j, i), (j0, j1, i0, i1) = spleen
    view = show_slice(parts, k)
    drag(qtbot, view, [(k, j, i - 3), (k, j, i + 3)])
    settle(parts)
    m = 4
    ring = [(k, j0 - m, i0 - m), (k, j0 - m, i1 + m), (k, j1 + m, i1 + m), (k, j1 + m, i0 - m), (k, j0 - m, i0 - m)]
    drag(qtbot, view, ring, SHIFT)
    settle(parts)


def test_tools_have_shortcuts_and_no_clash(segloop_app):
    a = segloop_app.window.named_actions
    for name, k in (("tool_smart_brush", "S"), ("tool_seeds", "G"), ("tool_click", "C"), ("tool_lasso", "L")):
        assert a[name].shortcut().toString() == k
    assert [s.toString() for s in a["preview_accept"].shortcuts()] == ["Return", "Enter"]
    keys = [s.toString() for act in a.values() for s in act.shortcuts()]
    assert len(keys) == len(set(keys))


def test_grow_from_seeds_preview_accept_undo(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    qtbot.keyClick(parts.grid.views["axial"].canvas.viewport(), QtCore.Qt.Key.Key_G)
    assert ed.tool_panel.tool == "seeds"
    ed.tools.brush.size = 3
    seed_spleen(parts, qtbot, spleen)
    preview = ed.tools.preview
    assert preview.has_result, ed.tool_panel.preview_label.text()
    assert not doc.mask.any() and not parts.window.named_actions["undo"].isEnabled()  # only a preview
    layer = ed.preview_layers[0]
    assert layer.item.isVisible() and layer.redraws > 0
    assert "preview in" in ed.tool_panel.preview_label.text()
    key(qtbot, parts, QtCore.Qt.Key.Key_Return)
    settle(parts)
    ref = spleen[0]
    assert dice(doc.mask == 1, ref) > 0.5  # seeds on one slice: the grown spleen overlaps the reference
    assert parts.window.named_actions["undo"].text() == "Undo Grow from seeds"
    assert not preview.active and not ed.tool_panel.named_actions["preview_accept"].isEnabled()
    parts.window.named_actions["undo"].trigger()
    assert not doc.mask.any()


def test_discard_and_cancel_leave_the_mask_as_it_was(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts, mask=LABEL)
    doc = parts.document
    start = doc.mask.copy()
    use_tool(ed, "seeds")
    ed.tool_panel.paint_over_combo.setCurrentIndex(ed.tool_panel.paint_over_combo.findData("all"))
    ed.tools.brush.label = 2
    ref, k, (_, j, i), _box = spleen
    view = show_slice(parts, k)
    drag(qtbot, view, [(k, j, i - 3), (k, j, i + 3)])
    drag(qtbot, view, [(k, 3, 3), (k, 3, 30)], SHIFT)
    key(qtbot, parts, QtCore.Qt.Key.Key_Escape)  # discard at once: a grow may still be running
    settle(parts)
    assert not ed.tools.preview.active
    np.testing.assert_array_equal(doc.mask, start)
    assert not parts.window.named_actions["undo"].isEnabled()


def test_grow_with_seeds_of_one_label_asks_for_background(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts)
    use_tool(ed, "seeds")
    _ref, k, (_, j, i), _box = spleen
    drag(qtbot, show_slice(parts, k), [(k, j, i - 3), (k, j, i + 3)])
    settle(parts)
    assert not ed.tools.preview.has_result
    assert "background" in ed.tool_panel.preview_label.text().lower()
    assert not parts.document.mask.any()


def test_click_to_segment_and_tolerance(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    use_tool(ed, "click")
    ref, k, centre, _box = spleen
    view = show_slice(parts, k)
    qtbot.mouseClick(view.canvas.viewport(), LEFT, NOMOD, widget_pos(view, centre))
    settle(parts)
    preview = ed.tools.preview
    assert preview.has_result and preview.labels.sum() > 0
    first = int((preview.labels > 0).sum())
    ed.tool_panel.tolerance_slider.setValue(20)  # recomputes the last click
    settle(parts)
    assert preview.has_result and int((preview.labels > 0).sum()) < first  # a stricter region
    ed.tool_panel.tolerance_slider.setValue(50)
    settle(parts)
    assert int((preview.labels > 0).sum()) == first  # the last click, recomputed: not added twice
    ed.tool_panel.accept_button.click()
    settle(parts)
    got = doc.mask == 1
    assert got[centre] and not got[:k].any() and not got[k + 1:].any()  # 2D brush mode: this slice
    assert dice(got[k], ref[k]) > 0.85
    assert parts.window.named_actions["undo"].text() == "Undo Click to segment"


def test_a_refused_click_says_why_and_changes_nothing(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts)
    use_tool(ed, "click")
    ref, k, centre, _box = spleen
    value = float(parts.document.image.array[centre])
    tp = ed.tool_panel
    tp.threshold_check.setChecked(True)
    tp.threshold_low.setValue(value + 100)  # the clicked voxel is outside the intensity limits
    tp.threshold_high.setValue(value + 200)
    view = show_slice(parts, k)
    qtbot.mouseClick(view.canvas.viewport(), LEFT, NOMOD, widget_pos(view, centre))
    settle(parts)
    assert not ed.tools.preview.has_result
    assert "intensity limits" in tp.preview_label.text()
    assert "intensity limits" in parts.window.statusBar().currentMessage()
    assert not parts.document.mask.any()


def test_lasso_by_mouse_fills_and_undoes(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    use_tool(ed, "lasso")
    view = parts.grid.views["axial"]
    k = view.slice_index
    drag(qtbot, view, [(k, 20, 20), (k, 20, 60), (k, 60, 60), (k, 60, 20)])
    assert (doc.mask[k, 22:59, 22:59] == 1).all() and not doc.mask[k, :18].any()
    assert not doc.mask[k - 1].any()
    assert parts.window.named_actions["undo"].text() == "Undo Lasso fill"
    assert not ed.interactions["axial"].lasso_path.isVisible()
    parts.window.named_actions["undo"].trigger()
    assert not doc.mask.any()
    drag(qtbot, view, [(k, 20, 20), (k, 20, 60)])  # two points: refused, nothing drawn
    assert not doc.mask.any()
    assert "point" in parts.window.statusBar().currentMessage().lower()


def test_smart_brush_by_mouse_stays_inside_the_spleen(segloop_app, qtbot, spleen):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    use_tool(ed, "smart_brush")
    ed.tools.brush.size = 15
    ed.tool_panel.tolerance_slider.setValue(30)
    ref, k, centre, _box = spleen
    drag(qtbot, show_slice(parts, k), [centre])
    painted = doc.mask[k] == 1
    assert painted[centre[1:]]
    assert (painted & ~ref[k]).sum() < 0.2 * painted.sum()
    assert parts.window.named_actions["undo"].text() == "Undo Smart brush stroke"
