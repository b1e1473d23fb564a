"""The scan's image item hands Qt a paint-ready QImage; NaN pixels stay transparent."""

from __future__ import annotations

import numpy as np
from PySide6 import QtGui

from desktop_app.viewer.image_items import DisplayImageItem


def rendered(item: DisplayImageItem, image: np.ndarray) -> QtGui.QImage:
    item.setImage(image, autoLevels=False, levels=(0.0, 1.0))
    item.render()
    assert item.qimage is not None
    return item.qimage


def test_opaque_scan_without_nans_is_rgb32(qapp):
    q = rendered(DisplayImageItem(opaque=True), np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    assert q.format() == QtGui.QImage.Format.Format_RGB32


def test_nan_pixels_stay_transparent_after_a_clean_image(qapp):
    item = DisplayImageItem(opaque=True)
    rendered(item, np.zeros((8, 8), np.float32))
    img = np.full((8, 8), 0.5, np.float32)
    img[2, 3] = np.nan
    q = rendered(item, img)
    assert q.format() == QtGui.QImage.Format.Format_ARGB32_Premultiplied
    assert QtGui.QColor(q.pixelColor(3, 2)).alpha() == 0
    assert QtGui.QColor(q.pixelColor(0, 0)).alpha() == 255


def test_overlay_is_premultiplied(qapp):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1, 1] = (255, 0, 0, 128)
    item = DisplayImageItem(opaque=False)
    item.setImage(rgba, autoLevels=False)
    item.render()
    assert item.qimage.format() == QtGui.QImage.Format.Format_ARGB32_Premultiplied
