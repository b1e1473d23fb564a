"""Correction-effort chart: voxels the reviewer changed per case, over time, by model version.

Each case added to the training set is one point (x = order in which cases were added,
y = voxels changed between the model's prediction and the correction), coloured by the
model version that made the prediction; a dashed line per version shows its mean. If the
loop works, later versions' points sit lower. The log is the open project's
(``project.effort_log_path``): :meth:`EffortChart.set_log` follows a project switch.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from desktop_app.state.effort import EffortLog
from desktop_app.widgets.curve_plot import CurvePlot

_COLOURS = ((231, 76, 60), (52, 152, 219), (46, 204, 113), (155, 89, 182), (241, 196, 15), (230, 126, 34))


class EffortChart(QtWidgets.QWidget):
    def __init__(self, log: EffortLog | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("effort_chart")
        self.log = log
        lay = QtWidgets.QVBoxLayout(self)
        # shorter than the Fine-tune curves: with its summary line it fits the same tabbed dock
        self.plot = CurvePlot(title="Voxels corrected per case", preferred_height=110)
        self.plot.setLabel("bottom", "case (in the order added)")
        self.plot.setLabel("left", "voxels changed")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setMinimumHeight(100)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.summary)
        self.refresh()

    def set_log(self, log: EffortLog | None) -> None:
        """Show another log (the open project's) and redraw."""
        self.log = log
        self.refresh()

    def refresh(self) -> None:
        self.plot.clear()
        self.legend.clear()
        log = self.log
        recs = sorted(log.records(), key=lambda r: r.time) if log is not None else []
        if log is None or not recs:
            self.summary.setText("No corrected cases yet: run the model, correct, then 'Add to training set'.")
            return
        order = {id(r): n + 1 for n, r in enumerate(recs)}
        parts = []
        for n, (version, rs) in enumerate(log.by_version().items()):
            colour = _COLOURS[n % len(_COLOURS)]
            xs = np.array([order.get(id(r), k + 1) for k, r in enumerate(rs)], float)
            ys = np.array([r.voxels_changed for r in rs], float)
            self.plot.plot(xs, ys, pen=None, symbol="o", symbolSize=9, symbolBrush=colour, name=f"{version}")
            mean = float(ys.mean())
            self.plot.plot([xs.min() - 0.3, xs.max() + 0.3], [mean, mean],
                           pen=pg.mkPen(colour, width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine))
            parts.append(f"{version}: {mean:,.0f} voxels/case ({len(rs)} case{'s' if len(rs) != 1 else ''})")
        self.summary.setText("Mean correction: " + "; ".join(parts))
