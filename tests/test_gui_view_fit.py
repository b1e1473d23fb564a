"""Every view can show its whole slice: a thin slab's coronal/sagittal views open fitted,
Reset zoom re-fits them, and Ctrl+wheel zoom-out always gets back to the whole slice."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.viewer.view_limits import fitted_range, pan_limits
from gui_helpers import show_volume, zoom_on
from unet_engine.volume import Volume

THIN = ("coronal", "sagittal")


def thin_slab() -> Volume:
    """20 slices of 512 x 512 CT: 2 mm slices (40 mm thick), 0.8 mm pixels (410 mm wide)."""
    arr = np.zeros((20, 512, 512), np.int16)
    arr[:, ::16, :] = 300  # something to look at
    return Volume(arr, (2.0, 0.8, 0.8), (-200.0, -200.0, 0.0), modality="CT")


def visible_rect(view) -> QtCore.QRectF:
    """The part of the slice plane (display mm) drawn in the view's viewport right now."""
    vp = view.canvas.viewport()
    scene = view.canvas.mapToScene(vp.rect()).boundingRect()
    return view.viewbox.mapSceneToView(scene).boundingRect()


def shows_whole_slice(view) -> bool:
    w, h = view.geometry_info.extent_mm()
    r = visible_rect(view)
    tol = 1e-3
    return r.left() <= tol and r.top() <= tol and r.right() >= w - tol and r.bottom() >= h - tol


def ctrl_wheel(view, clicks: int) -> None:
    """Ctrl + mouse wheel over the view's centre (positive = zoom in, negative = out)."""
    vp = view.canvas.viewport()
    local = QtCore.QPointF(vp.width() / 2, vp.height() / 2)
    glob = QtCore.QPointF(vp.mapToGlobal(local.toPoint()))
    event = QtGui.QWheelEvent(local, glob, QtCore.QPoint(0, 0), QtCore.QPoint(0, 120 * clicks),
                              QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.ControlModifier,
                              QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(vp, event)


@pytest.mark.parametrize("viewport", [(278, 276), (900, 120), (120, 900)])
def test_limits_always_allow_the_fitted_range(viewport):
    extent = (409.6, 40.0)
    fx, fy = fitted_range(extent, viewport)
    assert fx >= extent[0] and fy >= extent[1]
    assert fx / fy == pytest.approx(viewport[0] / viewport[1])  # locked 1:1 physical aspect
    lim = pan_limits(extent, viewport)
    # room for the fitted range plus pyqtgraph's auto-range padding (up to 10% a side)
    assert lim["xMax"] - lim["xMin"] >= 1.2 * fx and lim["yMax"] - lim["yMin"] >= 1.2 * fy
    assert lim["xMin"] <= 0 and lim["xMax"] >= extent[0] and lim["yMin"] <= 0 and lim["yMax"] >= extent[1]


def test_thin_slab_views_open_fitted_and_reset_zoom_refits(segloop_app, qtbot):
    parts = segloop_app
    parts.window.resize(1400, 900)
    show_volume(parts, thin_slab())
    views = parts.grid.views
    for plane in THIN:
        w, h = views[plane].geometry_info.extent_mm()
        assert w == pytest.approx(409.6) and h == pytest.approx(40.0)
    qtbot.waitUntil(lambda: all(shows_whole_slice(views[p]) for p in (*THIN, "axial")), timeout=3000)
    for plane in THIN:
        view = views[plane]
        r = visible_rect(view)
        # fitted, not lost in space: the slice's width fills most of the view
        assert r.width() < 1.3 * 409.6
        # physical aspect kept: a mm across is as many screen pixels as a mm down
        vp = view.canvas.viewport()
        assert (vp.width() / r.width()) == pytest.approx(vp.height() / r.height(), rel=0.02)
        zoom_on(view, (10, 256, 256), voxels=8)
        assert not shows_whole_slice(view)
    parts.window.named_actions["reset_zoom"].trigger()
    qtbot.waitUntil(lambda: all(shows_whole_slice(views[p]) for p in THIN), timeout=3000)


def test_zoom_out_reaches_the_whole_slice_in_any_view_shape(segloop_app, qtbot):
    parts = segloop_app
    parts.window.resize(1400, 900)
    show_volume(parts, thin_slab())
    for layout in ("3-up", "coronal"):
        parts.grid.set_layout(layout)
        for plane in THIN if layout == "3-up" else ("coronal",):
            view = parts.grid.views[plane]
            zoom_on(view, (10, 256, 256), voxels=8)
            assert not shows_whole_slice(view)
            for _ in range(40):  # the user keeps zooming out
                ctrl_wheel(view, -2)
            qtbot.waitUntil(lambda v=view: shows_whole_slice(v), timeout=3000)
    # a tall, narrow view (side panels pushed wide) still fits the whole slab when re-fitted
    parts.grid.set_layout("sagittal")
    view = parts.grid.views["sagittal"]
    view.setFixedWidth(160)
    parts.window.named_actions["reset_zoom"].trigger()
    qtbot.waitUntil(lambda: shows_whole_slice(view), timeout=3000)
