"""The three linked views on in-memory volumes: slices, overlay, crosshair, mouse, keys."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.intensity import intensity_stats
from desktop_app.viewer.slice_geometry import PLANES
from gui_helpers import click_view, make_ct_volume, show_volume, voxel_widget_pos, zoom_on


def expected_rgba(parts, plane: str) -> np.ndarray:
    view = parts.grid.views[plane]
    g = view.geometry_info
    lut = np.asarray(parts.document.labels.lut(size=max(256, max(parts.document.labels.labels, default=0) + 2)))
    return lut[g.extract(parts.document.mask, parts.document.cursor[g.axis])]


def test_views_show_the_cursor_slices_with_overlay(segloop_app):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    doc = parts.document
    for plane in PLANES:
        view = parts.grid.views[plane]
        g = view.geometry_info
        np.testing.assert_array_equal(view.image_item.image, g.extract(vol.array, doc.cursor[g.axis]))
        np.testing.assert_array_equal(view.overlay_item.image, expected_rgba(parts, plane))
        assert view.image_item.levels.tolist() == [-160.0, 240.0]  # CT -> soft tissue preset
        # pixels are spacing-sized: the item maps one pixel to (col_spacing, row_spacing) mm
        t = view.image_item.transform()
        assert (t.m11(), t.m22()) == pytest.approx((g.col_spacing, g.row_spacing))
    assert parts.window_level.preset == "Soft tissue"
    assert parts.grid.views["axial"].info_text == f"Axial  {doc.cursor[0] + 1}/{vol.shape[0]}"
    k, j, i = doc.cursor
    assert f"Voxel (i, j, k) = ({i}, {j}, {k})" in parts.window.position_label.text()
    assert f"Value {vol.array[k, j, i]}" in parts.window.position_label.text()


def test_click_moves_the_crosshair_and_the_other_views(segloop_app, qtbot):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    doc = parts.document
    axial = parts.grid.views["axial"]
    g = axial.geometry_info
    k = doc.cursor[0]
    click_view(qtbot, axial, kji=(k, 5, 30))
    assert doc.cursor == (k, 5, 30)
    for plane in ("coronal", "sagittal"):
        view = parts.grid.views[plane]
        gv = view.geometry_info
        assert view.slice_index == doc.cursor[gv.axis]
        np.testing.assert_array_equal(view.image_item.image, gv.extract(vol.array, doc.cursor[gv.axis]))
    # the crosshair lines sit on the clicked voxel centre
    x, y = g.crosshair_mm(doc.cursor)
    assert (axial.v_line.value(), axial.h_line.value()) == pytest.approx((x, y))
    # and programmatic cursor moves (document.set_cursor) drive the views too
    doc.set_cursor((3, 20, 10))
    sag = parts.grid.views["sagittal"]
    assert sag.slice_index == 10 and sag.slider.value() == 10
    np.testing.assert_array_equal(parts.grid.views["axial"].image_item.image, g.extract(vol.array, 3))
    assert "Voxel (i, j, k) = (10, 20, 3)" in parts.window.position_label.text()


def test_hover_shows_voxel_value_and_label_in_status_bar(segloop_app, qtbot):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    parts.document.labels.rename(1, "Spleen")
    axial = parts.grid.views["axial"]
    k = parts.document.cursor[0]
    kji = (k, 12, 20)  # inside the labelled block
    assert mask[kji] == 1
    zoom_on(axial, kji)
    qtbot.mouseMove(axial.canvas.viewport(), voxel_widget_pos(axial, kji))
    qtbot.waitUntil(lambda: "(20, 12," in parts.window.position_label.text(), timeout=2000)
    text = parts.window.position_label.text()
    assert f"Value {vol.array[kji]}" in text and "Label 1: Spleen" in text


def test_wheel_keys_and_slider_change_the_slice(segloop_app, qtbot):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    doc = parts.document
    axial = parts.grid.views["axial"]
    k0 = doc.cursor[0]
    wheel = QtGui.QWheelEvent(QtCore.QPointF(50, 50), QtCore.QPointF(50, 50), QtCore.QPoint(0, 0),
                              QtCore.QPoint(0, 120), QtCore.Qt.MouseButton.NoButton,
                              QtCore.Qt.KeyboardModifier.NoModifier, QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    axial.canvas.wheelEvent(wheel)
    assert doc.cursor[0] == k0 + 1
    np.testing.assert_array_equal(axial.image_item.image, axial.geometry_info.extract(vol.array, k0 + 1))
    parts.grid.set_active("axial")
    parts.window.named_actions["slice_prev"].trigger()
    parts.window.named_actions["slice_next_10"].trigger()
    assert doc.cursor[0] == min(k0 + 10, vol.shape[0] - 1)
    parts.window.activateWindow()
    axial.canvas.setFocus()
    qtbot.keyClick(axial.canvas, QtCore.Qt.Key.Key_Down)
    assert doc.cursor[0] == min(k0 + 10, vol.shape[0] - 1) - 1
    parts.grid.views["coronal"].slider.setValue(7)
    assert doc.cursor[1] == 7
    # ctrl+wheel zooms instead of scrolling
    before = axial.viewbox.viewRange()
    local = QtCore.QPointF(60, 60)
    glob = QtCore.QPointF(axial.canvas.viewport().mapToGlobal(local.toPoint()))  # the scene finds items by it
    zoom = QtGui.QWheelEvent(local, glob, QtCore.QPoint(0, 0),
                             QtCore.QPoint(0, 240), QtCore.Qt.MouseButton.NoButton,
                             QtCore.Qt.KeyboardModifier.ControlModifier, QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(axial.canvas.viewport(), zoom)
    after = axial.viewbox.viewRange()
    assert after[0][1] - after[0][0] < before[0][1] - before[0][0]
    parts.window.named_actions["reset_zoom"].trigger()


def test_right_drag_changes_window_and_level(segloop_app, qtbot):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    view = parts.grid.views["coronal"]
    vp = view.canvas.viewport()
    w0, l0 = parts.window_level.window_box.value(), parts.window_level.level_box.value()
    right = QtCore.Qt.MouseButton.RightButton
    qtbot.mousePress(vp, right, pos=QtCore.QPoint(40, 40))
    move = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(90, 20), QtCore.QPointF(90, 20),
                             QtCore.Qt.MouseButton.NoButton, right, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(vp, move)
    qtbot.mouseRelease(vp, right, pos=QtCore.QPoint(90, 20))
    w1, l1 = parts.window_level.window_box.value(), parts.window_level.level_box.value()
    assert w1 > w0 and l1 > l0  # right = wider, up = higher level
    lo, hi = view.image_item.levels
    assert (hi - lo) == pytest.approx(w1, rel=1e-3)
    assert parts.window_level.preset == ""
    parts.window.named_actions["wl_preset_3"].trigger()  # lung
    assert parts.grid.views["axial"].image_item.levels.tolist() == [-1350.0, 150.0]
    parts.window.named_actions["wl_auto"].trigger()
    assert parts.window_level.levels == pytest.approx(intensity_stats(vol.array).auto_levels)


def test_paint_mode_hands_left_drag_to_tools(segloop_app, qtbot):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    doc = parts.document
    parts.grid.set_left_button_mode("paint")
    view = parts.grid.views["sagittal"]
    events = []
    for name in ("voxel_pressed", "voxel_dragged", "voxel_released"):
        getattr(view, name).connect(lambda *a, name=name: events.append((name, a)))
    before = doc.cursor
    kji_a, kji_b = (4, 10, before[2]), (6, 14, before[2])
    vp = view.canvas.viewport()
    left = QtCore.Qt.MouseButton.LeftButton

    def widget_pos(kji):
        return voxel_widget_pos(view, kji)

    zoom_on(view, (5, 12, before[2]), voxels=10)
    qtbot.mousePress(vp, left, pos=widget_pos(kji_a))
    p = QtCore.QPointF(widget_pos(kji_b))
    QtWidgets.QApplication.sendEvent(vp, QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, p, p, left, left,
                                                           QtCore.Qt.KeyboardModifier.NoModifier))
    qtbot.mouseRelease(vp, left, pos=widget_pos(kji_b))
    assert [e[0] for e in events] == ["voxel_pressed", "voxel_dragged", "voxel_released"]
    axis, index, row, col = events[0][1]
    assert (axis, index) == (2, before[2])
    assert (row, col) == pytest.approx(kji_a[:2], abs=0.51)  # plane axes (k, j) for axis 2
    assert events[1][1][2:] == pytest.approx(kji_b[:2], abs=0.51)
    assert doc.cursor == before  # paint mode never moves the crosshair
    parts.grid.set_left_button_mode("navigate")
    click_view(qtbot, view, kji=kji_a)
    assert doc.cursor == kji_a and len(events) == 3


def test_mask_change_redraws_only_views_whose_slice_meets_the_bbox(segloop_app):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    doc = parts.document
    k, j, i = doc.cursor
    before = {p: v.redraws["overlay"] for p, v in parts.grid.views.items()}
    doc.mask[k, j + 1 : j + 3, i + 5 : i + 7] = 2  # axial slice k, away from sagittal slice i
    doc.labels.ensure({2})
    after_labels = {p: v.redraws["overlay"] for p, v in parts.grid.views.items()}
    doc.notify_mask_changed(((k, k + 1), (j + 1, j + 3), (i + 5, i + 7)))
    counts = {p: v.redraws["overlay"] - after_labels[p] for p, v in parts.grid.views.items()}
    assert counts == {"axial": 1, "coronal": 0, "sagittal": 0}
    assert all(after_labels[p] >= before[p] for p in before)
    np.testing.assert_array_equal(parts.grid.views["axial"].overlay_item.image, expected_rgba(parts, "axial"))
    assert parts.grid.views["axial"].redraws["image"] == 1  # the scan slice was not re-extracted


def test_overlay_options_outline_opacity_visibility_and_uncertainty(segloop_app):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    axial = parts.grid.views["axial"]
    a = parts.window.named_actions
    a["toggle_outline"].trigger()
    assert parts.options.outline and parts.overlay_panel.outline.isChecked()
    img = axial.overlay_item.image
    assert img[..., 3].sum() < expected_rgba(parts, "axial")[..., 3].sum()  # only the rim is drawn
    a["toggle_outline"].trigger()
    a["opacity_up"].trigger()
    assert axial.overlay_item.opacity() == pytest.approx(0.6)
    parts.overlay_panel.opacity.setValue(20)
    assert axial.overlay_item.opacity() == pytest.approx(0.2)
    item = parts.overlay_panel.label_list.item(0)
    item.setCheckState(QtCore.Qt.CheckState.Unchecked)
    assert not parts.document.labels[1].visible
    assert axial.overlay_item.image[..., 3].max() == 0
    a["toggle_overlay"].trigger()
    assert not axial.overlay_item.isVisible()
    # uncertainty heat map
    assert not parts.overlay_panel.show_uncertainty.isEnabled()
    unc = np.linspace(0, 1, vol.array.size, dtype=np.float32).reshape(vol.shape)
    parts.document.set_uncertainty(unc)
    assert parts.overlay_panel.show_uncertainty.isEnabled()
    a["toggle_uncertainty"].trigger()
    g = axial.geometry_info
    assert axial.uncertainty_item.isVisible()
    np.testing.assert_array_equal(axial.uncertainty_item.image, g.extract(unc, parts.document.cursor[0]))
    a["toggle_uncertainty"].trigger()
    assert not axial.uncertainty_item.isVisible()
    a["toggle_crosshair"].trigger()
    assert not axial.v_line.isVisible()


def test_layouts_and_view_cycling(segloop_app):
    parts = segloop_app
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    a, grid = parts.window.named_actions, parts.grid
    a["layout_coronal"].trigger()
    assert grid.layout_name == "coronal" and grid.views["coronal"].isVisible()
    assert not grid.views["axial"].isVisible()
    a["next_view"].trigger()
    assert grid.layout_name == "sagittal" and grid.active_plane == "sagittal"
    a["layout_3up"].trigger()
    assert all(v.isVisible() for v in grid.views.values())
    a["prev_view"].trigger()
    assert grid.active_plane == "coronal" and grid.layout_name == "3-up"
    grid.set_layout("axial")
    assert a["layout_axial"].isChecked()
