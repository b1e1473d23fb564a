"""Window/level panel: intensity histogram with a draggable level range, W/L spin boxes
and presets (CT brain / soft tissue / lung / bone, Auto = 0.5-99.5 percentiles).

It owns the current levels and emits ``levels_changed(low, high)``; the views apply them.
Right-drag in a view calls :meth:`WindowLevelWidget.drag`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from desktop_app.state.intensity import (
    AUTO,
    CT_PRESETS,
    IntensityStats,
    default_levels,
    drag_levels,
    levels_from_window,
    preset_levels,
    window_from_levels,
)

#: Presets in key order: keys 1-4 are the CT presets, 0 is Auto.
PRESET_NAMES: tuple[str, ...] = (*CT_PRESETS.keys(), AUTO)


class WindowLevelWidget(QtWidgets.QWidget):
    """Histogram + levels + presets for the open scan."""

    levels_changed = QtCore.Signal(float, float)
    preset_changed = QtCore.Signal(str)  # preset name, "" once levels were edited by hand

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("window_level")
        self.stats: IntensityStats | None = None
        self._levels: tuple[float, float] = (0.0, 1.0)
        self._preset = ""
        self._updating = False

        self.plot = pg.PlotWidget(background=None)
        self.plot.setMinimumHeight(90)
        self.plot.setMaximumHeight(140)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideAxis("left")
        self.plot.getPlotItem().hideButtons()
        self.curve = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(120, 120, 120, 160),
                                    pen=pg.mkPen((170, 170, 170)))
        self.region = pg.LinearRegionItem(values=(0, 1), brush=(80, 160, 255, 50))
        self.region.setZValue(10)
        self.plot.addItem(self.region)
        self.region.sigRegionChanged.connect(self._on_region)

        self.window_box = QtWidgets.QDoubleSpinBox(decimals=1, minimum=1e-3, maximum=1e9, singleStep=10.0)
        self.level_box = QtWidgets.QDoubleSpinBox(decimals=1, minimum=-1e9, maximum=1e9, singleStep=10.0)
        self.window_box.setObjectName("window_box")
        self.level_box.setObjectName("level_box")
        self.window_box.setKeyboardTracking(False)
        self.level_box.setKeyboardTracking(False)
        self.window_box.valueChanged.connect(self._on_boxes)
        self.level_box.valueChanged.connect(self._on_boxes)

        self.preset_buttons: dict[str, QtWidgets.QPushButton] = {}
        buttons = QtWidgets.QGridLayout()
        buttons.setSpacing(2)
        for n, name in enumerate(PRESET_NAMES):
            b = QtWidgets.QPushButton(name)
            b.setCheckable(True)
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
            if name in CT_PRESETS:
                w, lv = CT_PRESETS[name]
                b.setToolTip(f"CT {name.lower()}: window {w:g} / level {lv:g} HU")
            else:
                b.setToolTip("Auto: 0.5-99.5 percentiles of the scan (MR, PET, photos)")
            b.clicked.connect(lambda _=False, name=name: self.apply_preset(name))
            buttons.addWidget(b, n // 3, n % 3)
            self.preset_buttons[name] = b

        form = QtWidgets.QFormLayout()
        form.addRow("Window", self.window_box)
        form.addRow("Level", self.level_box)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.plot)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addStretch(1)
        self.setEnabled(False)

    # ----- API -----------------------------------------------------------------------------
    @property
    def levels(self) -> tuple[float, float]:
        return self._levels

    @property
    def preset(self) -> str:
        return self._preset

    def set_stats(self, stats: IntensityStats, modality: str = "unknown") -> None:
        """New scan: show its histogram and apply the default preset for its modality."""
        self.stats = stats
        counts = np.log1p(stats.hist_counts)
        self.curve.setData(stats.hist_edges, counts)
        self.plot.setXRange(stats.vmin, stats.vmax, padding=0.02)
        self.plot.setYRange(0, float(counts.max()) if counts.size else 1.0, padding=0.05)
        name, levels = default_levels(modality, stats)
        self.setEnabled(True)
        self.set_levels(*levels, preset=name)

    def apply_preset(self, name: str) -> None:
        if self.stats is None:
            return
        self.set_levels(*preset_levels(name, self.stats), preset=name)

    def apply_preset_index(self, index: int) -> None:
        """Keys: 1-4 = CT presets in order, 0 = Auto."""
        names = list(CT_PRESETS)
        self.apply_preset(AUTO if index == 0 else names[index - 1])

    def drag(self, dx: float, dy: float) -> None:
        """Right-drag in a view: horizontal = window, vertical = level."""
        if self.stats is None:
            return
        self.set_levels(*drag_levels(self._levels, dx, dy, self.stats.drag_scale))

    def set_levels(self, low: float, high: float, preset: str = "") -> None:
        if high <= low:
            high = low + 1e-3
        self._levels = (float(low), float(high))
        self._preset = preset
        self._updating = True
        try:
            self.region.setRegion(self._levels)
            window, level = window_from_levels(*self._levels)
            self.window_box.setValue(window)
            self.level_box.setValue(level)
            for name, b in self.preset_buttons.items():
                b.setChecked(name == preset)
        finally:
            self._updating = False
        self.levels_changed.emit(*self._levels)
        self.preset_changed.emit(preset)

    # ----- widget events -----------------------------------------------------------------
    def _on_region(self) -> None:
        if not self._updating:
            lo, hi = self.region.getRegion()
            self.set_levels(lo, hi)

    def _on_boxes(self) -> None:
        if not self._updating:
            self.set_levels(*levels_from_window(self.window_box.value(), self.level_box.value()))
