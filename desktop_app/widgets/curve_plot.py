"""A pyqtgraph plot sized for a dock (the Fine-tune curves, the correction-effort chart)."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore


class CurvePlot(pg.PlotWidget):
    """A plot that asks for ``preferred_height`` pixels and grows with its dock:
    pyqtgraph's own 640 x 480 hint made the bottom panels taller than their dock, pushing
    their buttons and status lines below the fold."""

    def __init__(self, *args: Any, preferred_height: int = 150, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._preferred_height = int(preferred_height)

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(320, self._preferred_height)
