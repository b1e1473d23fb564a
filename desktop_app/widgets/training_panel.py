"""The "Fine-tune" panel: budget, start / pause / cancel, live loss and validation-Dice curves.

A view only; the training controller (:mod:`desktop_app.controllers.training`) runs the
training worker and feeds :meth:`TrainingPanel.on_step` / :meth:`on_epoch` with the
engine's reports. In a project without a model, "Start fine-tuning" gives way to
"Train first model" (:meth:`set_first_model`). With fewer than 2 validation cases the Dice
curve says "no validation yet" instead of plotting one case's score
(:meth:`set_validation_note`).
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from desktop_app.widgets.curve_plot import CurvePlot

_DICE_COLOURS = ((46, 204, 113), (52, 152, 219), (155, 89, 182), (241, 196, 15), (230, 126, 34))


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainingPanel(QtWidgets.QWidget):
    start_requested = QtCore.Signal()
    pause_toggled = QtCore.Signal(bool)
    cancel_requested = QtCore.Signal()
    resume_saved_requested = QtCore.Signal()
    first_model_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("training_panel")
        outer = QtWidgets.QHBoxLayout(self)
        # two short columns (set-up | run), not one tall one: at 1400 x 900 the buttons, the
        # progress and the status line all fit the bottom dock without scrolling
        setup = QtWidgets.QVBoxLayout()
        form = QtWidgets.QFormLayout()
        self.budget_spin = QtWidgets.QSpinBox()
        self.budget_spin.setRange(1, 100_000)
        self.budget_spin.setValue(5)  # minutes: a time budget is the default unit
        self.budget_unit = QtWidgets.QComboBox()
        self.budget_unit.addItem("steps", "steps")
        self.budget_unit.addItem("minutes", "minutes")
        self.budget_unit.setCurrentIndex(1)
        brow = QtWidgets.QHBoxLayout()
        brow.addWidget(self.budget_spin)
        brow.addWidget(self.budget_unit)
        form.addRow("Budget", brow)
        self.start_label = QtWidgets.QLabel("from: active model")
        self.start_label.setWordWrap(True)
        form.addRow("Start", self.start_label)
        self.dataset_label = QtWidgets.QLabel("dataset: —")
        self.dataset_label.setObjectName("training_dataset_label")
        self.dataset_label.setWordWrap(True)
        form.addRow("Data", self.dataset_label)
        setup.addLayout(form)
        setup.addStretch(1)
        run = QtWidgets.QVBoxLayout()
        row = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start fine-tuning")
        self.start_button.setObjectName("start_training_button")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        for b in (self.start_button, self.pause_button, self.cancel_button):
            row.addWidget(b)
        run.addLayout(row)
        row2 = QtWidgets.QHBoxLayout()
        self.first_model_button = QtWidgets.QPushButton("Train first model…")
        self.first_model_button.setObjectName("train_first_model_button")
        self.first_model_button.setToolTip("Plan a network for this project's data and train it from scratch")
        self.first_model_button.setVisible(False)
        self._first_model = (False, False)  # (needed, ready)
        row2.addWidget(self.first_model_button)
        self.resume_saved_button = QtWidgets.QPushButton("Continue saved run")
        self.resume_saved_button.setObjectName("resume_saved_run_button")
        self._saved_run: str | None = None
        self._running = False
        row2.addWidget(self.resume_saved_button)
        run.addLayout(row2)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.time_label = QtWidgets.QLabel("elapsed — · remaining —")
        self.time_label.setObjectName("time_label")
        prow = QtWidgets.QHBoxLayout()
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.time_label)
        run.addLayout(prow)
        self.status_label = QtWidgets.QLabel("Idle")
        self.status_label.setObjectName("training_status")
        self.status_label.setWordWrap(True)
        run.addWidget(self.status_label)
        run.addStretch(1)
        outer.addLayout(setup, 0)
        outer.addLayout(run, 0)

        self.loss_plot = CurvePlot(title="Training loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.3)
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((231, 76, 60), width=1.5), name="train loss")
        self.val_loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((241, 196, 15), width=2), symbol="o",
                                                  symbolSize=6, name="val loss")
        self.dice_plot = CurvePlot(title="Validation Dice")
        self.dice_plot.setLabel("bottom", "step")
        self.dice_plot.setYRange(0, 1)
        self.dice_plot.showGrid(x=True, y=True, alpha=0.3)
        self.dice_plot.addLegend(offset=(-10, -10))
        for p in (self.loss_plot, self.dice_plot):
            p.setMinimumSize(200, 120)
            outer.addWidget(p, 1)
        self.dice_curves: dict[str, pg.PlotDataItem] = {}
        self._redraw = QtCore.QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(250)
        self._redraw.timeout.connect(self.flush)
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.toggled.connect(self._on_pause)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.resume_saved_button.clicked.connect(self.resume_saved_requested)
        self.first_model_button.clicked.connect(self.first_model_requested)
        self._validation_note: str | None = None
        self.reset()
        self.set_running(False)

    # ----- budget ---------------------------------------------------------------------------
    def budget(self) -> tuple[str, int]:
        """("steps", n) or ("minutes", n)."""
        return str(self.budget_unit.currentData()), int(self.budget_spin.value())

    def set_budget(self, unit: str, value: int) -> None:
        self.budget_unit.setCurrentIndex(0 if unit == "steps" else 1)
        self.budget_spin.setValue(int(value))

    # ----- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        self._steps: list[float] = []
        self._losses: list[float] = []
        self._val: dict[str, tuple[list[float], list[float]]] = {}
        self._val_loss: tuple[list[float], list[float]] = ([], [])
        self.loss_curve.setData([], [])
        self.val_loss_curve.setData([], [])
        for c in self.dice_curves.values():
            self.dice_plot.removeItem(c)
        self.dice_curves.clear()
        self.progress.setValue(0)
        self._budget_s: float | None = None

    def set_saved_run(self, description: str | None) -> None:
        """A paused or cancelled run that can be continued (None: there is none)."""
        self._saved_run = description
        self.resume_saved_button.setToolTip(description or "No paused or cancelled run to continue")
        self.resume_saved_button.setEnabled(description is not None and not self._running)

    def set_first_model(self, needed: bool, ready: bool = False, why: str = "") -> None:
        """``needed``: the project has no model, so "Train first model" replaces "Start
        fine-tuning"; ``ready``: it has enough cases; ``why`` is the button's tooltip."""
        self._first_model = (needed, ready)
        self.first_model_button.setVisible(needed)
        self.first_model_button.setToolTip(why or "Plan a network for this project's data and train it from scratch")
        self.start_button.setToolTip("This project has no model yet: train its first model" if needed else "")
        self.set_running(self._running)

    def set_running(self, running: bool) -> None:
        self._running = running
        self.resume_saved_button.setEnabled(self._saved_run is not None and not running)
        needed, ready = self._first_model
        self.first_model_button.setEnabled(needed and ready and not running)
        self.start_button.setEnabled(not running and not needed)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.budget_spin.setEnabled(not running)
        self.budget_unit.setEnabled(not running)
        if not running:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)

    def set_time_budget(self, seconds: float | None) -> None:
        self._budget_s = seconds

    def _on_pause(self, on: bool) -> None:
        self.pause_button.setText("Resume" if on else "Pause")
        self.pause_toggled.emit(on)

    def on_step(self, step: int, total: int, loss: float, elapsed_s: float, paused: bool = False) -> None:
        frac = min(1.0, step / max(1, total))
        if self._budget_s:
            frac = max(frac, min(1.0, elapsed_s / self._budget_s))
        self.progress.setValue(int(1000 * frac))
        remaining = elapsed_s / frac * (1 - frac) if frac > 0 else None
        if self._budget_s:
            left = self._budget_s - elapsed_s
            remaining = left if remaining is None else min(remaining, left)
        self.time_label.setText(f"elapsed {format_seconds(elapsed_s)} · remaining {format_seconds(remaining)}")
        if paused:
            self.status_label.setText(f"Paused at step {step} of {total} (state saved)")
            return
        self.status_label.setText(f"Step {step} of {total} · loss {loss:.4f}")
        if math.isfinite(loss):
            self._steps.append(step)
            self._losses.append(loss)
            if not self._redraw.isActive():  # coalesce: at most ~4 curve repaints a second
                self._redraw.start()

    @property
    def loss_points(self) -> tuple[tuple[float, float], ...]:
        """The (step, loss) points of the training-loss curve so far, one per step report
        (the curve itself is redrawn at most ~4 times a second)."""
        return tuple(zip(self._steps, self._losses))

    def flush(self) -> None:
        """Draw the loss curve now (step reports only schedule a redraw)."""
        self._redraw.stop()
        self.loss_curve.setData(self._steps, self._losses)

    def set_validation_note(self, note: str | None) -> None:
        """``note`` (e.g. "no validation yet (1 case)"): the run's validation split is too small
        to show a Dice, so the Dice plot says so and plots nothing; None: plot the curves."""
        self._validation_note = note
        self.dice_plot.setTitle(f"Validation Dice: {note}" if note else "Validation Dice")

    def on_epoch(self, step: int, val_loss: float | None, val_dice: dict[str, float]) -> None:
        self.flush()
        if val_loss is not None and math.isfinite(val_loss):
            self._val_loss[0].append(step)
            self._val_loss[1].append(val_loss)
            self.val_loss_curve.setData(*self._val_loss)
        if self._validation_note:
            return  # too few validation cases: a Dice would mislead
        for name, d in val_dice.items():
            if d is None:
                continue  # n/a in every validation case: never drawn as a score
            xs, ys = self._val.setdefault(name, ([], []))
            xs.append(step)
            ys.append(float(d))
            if name not in self.dice_curves:
                colour = _DICE_COLOURS[len(self.dice_curves) % len(_DICE_COLOURS)]
                self.dice_curves[name] = self.dice_plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o",
                                                             symbolSize=6, symbolBrush=colour, name=name)
            self.dice_curves[name].setData(xs, ys)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)
