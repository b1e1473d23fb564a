"""Helpers shared by the GUI tests (the app shown at a size, volumes in memory, clicking on a view)."""

from __future__ import annotations

import contextlib

import numpy as np
from PySide6 import QtCore, QtWidgets

from desktop_app.state.intensity import intensity_stats
from unet_engine.volume import Volume


def make_ct_volume(shape=(12, 40, 48), spacing=(5.0, 0.8, 0.7)) -> tuple[Volume, np.ndarray]:
    """A small LPS CT-like volume (unique-ish values) with a labelled block."""
    rng = np.random.default_rng(0)
    arr = (rng.normal(0, 200, shape) + np.arange(shape[2])[None, None, :] * 3).astype(np.int16)
    vol = Volume(arr, spacing, (-100.0, -120.0, 50.0), modality="CT")
    mask = np.zeros(shape, np.uint8)
    mask[2:10, 8:30, 10:40] = 1
    return vol, mask


def show_volume(parts, vol: Volume, mask: np.ndarray | None = None) -> None:
    """What the controller does after a load, without a file."""
    parts.document.set_image(vol, mask)
    parts.window_level.set_stats(intensity_stats(vol.array), vol.modality)


def zoom_on(view, kji, voxels: int = 12) -> None:
    """Zoom ``view`` on voxel ``kji`` so one voxel spans many screen pixels (clicks on a
    voxel centre then land on that voxel whatever the window size)."""
    g = view.geometry_info
    x, y = g.crosshair_mm(kji)
    w, h = voxels * g.col_spacing, voxels * g.row_spacing
    view.viewbox.setRange(QtCore.QRectF(x - w / 2, y - h / 2, w, h), padding=0)
    QtWidgets.QApplication.processEvents()


def voxel_widget_pos(view, kji) -> QtCore.QPoint:
    g = view.geometry_info
    x, y = g.crosshair_mm(kji)
    return view.display_to_widget(y / g.row_spacing, x / g.col_spacing)


def click_view(qtbot, view, kji, button=QtCore.Qt.MouseButton.LeftButton) -> None:
    """Left-click on the centre of voxel ``kji`` as drawn in ``view`` (zoomed in on it)."""
    zoom_on(view, kji)
    qtbot.mouseClick(view.canvas.viewport(), button, pos=voxel_widget_pos(view, kji))


@contextlib.contextmanager
def shown_app(qtbot, width: int, height: int):
    """The full main window as it starts (no saved layout), shown offscreen at ``width`` x
    ``height``; workers are awaited and the controller shut down on exit."""
    from desktop_app.app import build_app

    parts = build_app(restore_layout=False)
    qtbot.addWidget(parts.window)
    parts.window.resize(width, height)
    parts.window.show()
    qtbot.waitExposed(parts.window)
    try:
        yield parts
    finally:
        parts.controller.workers.wait_idle(20_000)
        parts.controller.shutdown()
