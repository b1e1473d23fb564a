"""pyqtgraph ImageItem that hands the raster engine a QImage it can draw as is.

pyqtgraph renders a windowed scan slice as ``Format_ARGB32`` and an RGBA overlay as
``Format_RGBA8888``: both non-premultiplied, so Qt converts the *whole* image on every
paint -- and a view repaints several times per slice change (its own slice, then the
crosshair lines moving when another view scrolls). Converting once per render instead
(opaque scans are reinterpreted as ``RGB32`` at no cost; overlays become
``ARGB32_Premultiplied``) cut slice-change time by about 40 % in bench/viewer_bench.py.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui

_RGB32 = QtGui.QImage.Format.Format_RGB32
_ARGB32 = QtGui.QImage.Format.Format_ARGB32
_PREMULTIPLIED = QtGui.QImage.Format.Format_ARGB32_Premultiplied


class DisplayImageItem(pg.ImageItem):
    """An ImageItem (row-major) whose rendered QImage is paint-ready.

    ``opaque=True`` for the scan (every pixel has alpha 255 unless the data has NaNs),
    ``False`` for overlays with transparency.
    """

    qimage: QtGui.QImage | None  # set by pyqtgraph's render()

    def __init__(self, opaque: bool, **kwargs) -> None:
        kwargs.setdefault("axisOrder", "row-major")
        self._opaque = opaque
        self._has_nans = True  # until an image says otherwise (NaN pixels are drawn transparent)
        super().__init__(**kwargs)

    def setImage(self, image=None, autoLevels=None, **kargs) -> None:
        if image is not None:
            arr = np.asarray(image)
            self._has_nans = bool(arr.dtype.kind == "f" and np.isnan(arr).any())
        super().setImage(image, autoLevels=autoLevels, **kargs)

    def render(self) -> None:
        super().render()
        q = self.qimage
        if q is None or self.image is None or self.image.size == 0:
            return
        fmt = q.format()
        if self._opaque and not self._has_nans:
            if fmt == _ARGB32:
                q.reinterpretAsFormat(_RGB32)  # alpha is 255 everywhere: same bytes
            elif fmt != _RGB32:
                self.qimage = q.convertToFormat(_RGB32)
        elif fmt != _PREMULTIPLIED:
            self.qimage = q.convertToFormat(_PREMULTIPLIED)
