"""The first-model plan, shown before anything trains: what SegLoop chose for this project's
data and why, the time budget (minutes), and an "Advanced" section with the editable fields.

A view only. Changing a field marks the plan as edited: "Update plan" asks the controller to
plan again with those fields fixed (``changes_requested(dict)`` with
:data:`unet_engine.planning.EDITABLE` names); Start is disabled until the plan on screen is
the one that will train. ``start_requested`` carries that plan.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6 import QtCore, QtWidgets

_KINDS = (("2D", 2, 0), ("2.5D (1 neighbour slice each side)", 2, 1), ("3D", 3, 0))
_NORMS = (("CT window (from the labelled voxels)", "CT"), ("MR z-score (nonzero voxels)", "MR"),
          ("z-score (all voxels)", "z-score"))


def parse_sizes(text: str, n: int | None, what: str, allow_native: bool = False) -> list[Any]:
    """``"64 x 48"`` -> ``[64, 48]``; ``"1 x 0.8 x native"`` -> ``[1.0, 0.8, None]`` (spacing).
    ValueError naming ``what`` when the text is not ``n`` sizes."""
    tokens = [t for t in re.split(r"[\sx×,;]+", text.strip().lower()) if t]
    out: list[Any] = []
    for t in tokens:
        if allow_native and t in ("native", "-", "none"):
            out.append(None)
            continue
        try:
            out.append(float(t) if allow_native else int(t))
        except ValueError:
            raise ValueError(f"{what}: {t!r} is not a {'number' if allow_native else 'whole number'}") from None
    if n is not None and len(out) != n:
        raise ValueError(f"{what}: expected {n} sizes separated by 'x', got {len(out)}")
    return out


def format_sizes(values: Any) -> str:
    if values is None:
        return "native"
    return " x ".join("native" if v is None else f"{v:g}" for v in values)


def norm_key(normalization: dict[str, Any]) -> str:
    if normalization.get("mode") == "ct":
        return "CT"
    return "MR" if normalization.get("foreground") == "nonzero" else "z-score"


class PlanDialog(QtWidgets.QDialog):
    """The plan and its Advanced fields; Start / Cancel."""

    changes_requested = QtCore.Signal(dict)
    start_requested = QtCore.Signal(object)  # the TrainingPlan shown

    def __init__(self, project_name: str, cases: int, val_cases: int, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("plan_dialog")
        self.setWindowTitle(f"Train the first model of {project_name}")
        self.plan: Any = None
        self._dirty = False
        self._shown_minutes = 0.0
        lay = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(
            f"Project {project_name!r} has {cases} corrected cases ({val_cases} for validation). SegLoop planned "
            "a network for them (nnU-Net's rules, measured on this computer). Nothing trains until you press Start.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.summary = QtWidgets.QPlainTextEdit()
        self.summary.setObjectName("plan_summary")
        self.summary.setReadOnly(True)
        self.summary.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.summary.setMinimumHeight(190)
        lay.addWidget(self.summary, 1)

        budget = QtWidgets.QFormLayout()
        self.minutes = QtWidgets.QDoubleSpinBox()
        self.minutes.setObjectName("plan_minutes")
        self.minutes.setRange(0.1, 10_000)
        self.minutes.setDecimals(1)
        self.minutes.setSuffix(" min")
        self.minutes.setMaximumWidth(300)
        budget.addRow("Time budget", self.minutes)
        lay.addLayout(budget)

        self.advanced = QtWidgets.QGroupBox("Advanced")
        self.advanced.setObjectName("plan_advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self._adv_body = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(self._adv_body)
        self.kind = QtWidgets.QComboBox()
        self.kind.setObjectName("plan_dims")
        for text, _d, _c in _KINDS:
            self.kind.addItem(text)
        self.base_width = _spin("plan_base_width", 4, 64)
        self.depth_field = _spin("plan_depth", 1, 6)
        self.patch = QtWidgets.QLineEdit()
        self.patch.setObjectName("plan_patch")
        self.batch = _spin("plan_batch", 1, 256)
        self.spacing = QtWidgets.QLineEdit()
        self.spacing.setObjectName("plan_spacing")
        self.spacing.setToolTip("mm along k x j x i; 'native' keeps an axis as scanned")
        self.norm = QtWidgets.QComboBox()
        self.norm.setObjectName("plan_normalization")
        for text, key in _NORMS:
            self.norm.addItem(text, key)
        self.steps = _spin("plan_steps", 20, 10_000_000)
        self.steps.setToolTip("Training steps; setting them replaces the time budget")
        for label, w in (("Network", self.kind), ("Base width", self.base_width), ("Depth", self.depth_field),
                         ("Patch (voxels)", self.patch), ("Batch", self.batch), ("Target spacing (mm)", self.spacing),
                         ("Normalisation", self.norm), ("Steps", self.steps)):
            w.setMaximumWidth(300)
            form.addRow(label, w)
        box = QtWidgets.QVBoxLayout(self.advanced)
        box.addWidget(self._adv_body)
        self._adv_body.setVisible(False)
        self.advanced.toggled.connect(self._adv_body.setVisible)
        lay.addWidget(self.advanced)

        self.error_label = QtWidgets.QLabel("")
        self.error_label.setObjectName("plan_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        lay.addWidget(self.error_label)
        row = QtWidgets.QHBoxLayout()
        self.update_button = QtWidgets.QPushButton("Update plan")
        self.update_button.setObjectName("plan_update_button")
        self.start_button = QtWidgets.QPushButton("Start training")
        self.start_button.setObjectName("plan_start_button")
        self.start_button.setDefault(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setObjectName("plan_cancel_button")
        row.addWidget(self.update_button)
        row.addStretch(1)
        row.addWidget(self.start_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.update_button.clicked.connect(self._request_update)
        self.start_button.clicked.connect(lambda: self.plan is not None and self.start_requested.emit(self.plan))
        self.cancel_button.clicked.connect(self.reject)
        self._touched: set[str] = set()  # fields the user changed (fixed even when back to the planned value)
        for name, spin in (("minutes", self.minutes), ("base_width", self.base_width), ("depth", self.depth_field),
                           ("batch_size", self.batch), ("max_steps", self.steps)):
            spin.valueChanged.connect(lambda _v, n=name: self._edited(n))
            line = spin.lineEdit()
            assert line is not None  # a spin box has its line edit
            line.textEdited.connect(lambda _t, n=name: self._edited(n))  # typed, even the same value
        for name, combo in (("dims", self.kind), ("normalization", self.norm)):
            combo.currentIndexChanged.connect(lambda _i, n=name: self._edited(n))
        for name, field in (("patch_size", self.patch), ("target_spacing", self.spacing)):
            field.textEdited.connect(lambda _t, n=name: self._edited(n))
        self._loading = False
        self._busy = False
        self.resize(760, 620)

    # ----- content -------------------------------------------------------------------------
    def set_plan(self, plan: Any) -> None:
        """Show ``plan`` (its summary and its fields); it is what Start will train."""
        self.plan = plan
        self._loading = True
        try:
            self.summary.setPlainText("\n".join(plan.summary_lines()))
            self.minutes.setValue(float(plan.minutes if plan.minutes is not None else plan.estimated_minutes))
            self._shown_minutes = self.minutes.value()
            self.kind.setCurrentIndex(next(i for i, (_t, d, c) in enumerate(_KINDS)
                                           if d == plan.dims and c == min(1, plan.context_slices)))
            self.base_width.setValue(plan.base_width)
            self.depth_field.setValue(plan.depth)
            self.patch.setText(format_sizes(plan.patch_size))
            self.batch.setValue(plan.batch_size)
            self.spacing.setText(format_sizes(plan.target_spacing))
            self.norm.setCurrentIndex(max(0, self.norm.findData(norm_key(plan.normalization))))
            self.steps.setValue(plan.max_steps)
        finally:
            self._loading = False
        self.error_label.setText("")
        self._dirty = False
        self._touched = set()
        self.set_busy(False)

    def changes(self) -> dict[str, Any]:
        """The fields the user changed (ValueError for unreadable text). A field typed over is
        fixed even when it holds the planned value: the rest is planned around it."""
        p, t = self.plan, self._touched
        out: dict[str, Any] = {}
        _text, dims, context = _KINDS[self.kind.currentIndex()]
        if "dims" in t or dims != p.dims or context != min(1, p.context_slices):
            out["dims"], out["context_slices"] = dims, context
        for name, w in (("base_width", self.base_width), ("depth", self.depth_field), ("batch_size", self.batch)):
            if name in t or w.value() != getattr(p, name):
                out[name] = int(w.value())
        if "patch_size" in t or self.patch.text().strip().lower() != format_sizes(p.patch_size).lower():
            out["patch_size"] = parse_sizes(self.patch.text(), dims, "Patch")
        spacing_text = self.spacing.text().strip().lower()
        if "target_spacing" in t or spacing_text != format_sizes(p.target_spacing).lower():
            out["target_spacing"] = None if spacing_text in ("", "native") else parse_sizes(
                spacing_text, 3, "Target spacing", allow_native=True)
        if "normalization" in t or self.norm.currentData() != norm_key(p.normalization):
            out["normalization"] = self.norm.currentData()
        if "minutes" in t and self.minutes.value() != self._shown_minutes:
            out["minutes"] = float(self.minutes.value())
        if "max_steps" in t or self.steps.value() != p.max_steps:
            out["max_steps"] = int(self.steps.value())
        return out

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.set_busy(False)

    def set_busy(self, busy: bool, text: str = "") -> None:
        """While the controller re-plans: buttons off, ``text`` shown."""
        self._busy = busy
        if busy:
            self.error_label.setText(text)
        self.update_button.setEnabled(not busy)
        self.start_button.setEnabled(not busy and self.plan is not None and not self._dirty)
        self.start_button.setToolTip("Press Update plan to see the plan with your changes first" if self._dirty else "")

    # ----- internals -----------------------------------------------------------------------
    def _edited(self, name: str) -> None:
        if self._loading or self.plan is None:
            return
        self._touched.add(name)
        self._dirty = True
        self.error_label.setText("Changed: press Update plan to see the new plan before starting.")
        self.set_busy(self._busy)

    def _request_update(self) -> None:
        if self.plan is None:
            return
        try:
            changes = self.changes()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        if not changes:
            self._dirty = False
            self.error_label.setText("")
            self.set_busy(False)
            return
        self.set_busy(True, "Planning again…")
        self.changes_requested.emit(changes)


def _spin(name: str, lo: int, hi: int) -> QtWidgets.QSpinBox:
    s = QtWidgets.QSpinBox()
    s.setObjectName(name)
    s.setRange(lo, hi)
    return s
