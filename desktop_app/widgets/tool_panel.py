"""Tools panel: navigate / brush / eraser / fill / smart brush / grow from seeds / click to
segment / lasso, brush shape and size, 2D/3D, paint-over rule, threshold paint, the
tolerance of the click and smart-brush tools, Accept / Discard of a preview, and the
one-shot "Interpolate slices" / "Fill holes" buttons (disabled by
:meth:`ToolPanel.set_busy` while such an op computes in a worker).

The panel edits a :class:`~desktop_app.state.brush.BrushSettings` in place and emits
``settings_changed()``; the chosen tool is announced with ``tool_changed(name)``.
Keyboard shortcuts live on the panel's QActions (:attr:`ToolPanel.named_actions`): N navigate,
B brush, E eraser, F fill, S smart brush, G grow from seeds, C click to segment, L lasso,
``[`` / ``]`` brush size, Enter accept and Esc discard a preview; the editing controller
registers them with the window.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.brush import BrushSettings
from desktop_app.state.labels import LabelTable

TOOL_NAMES: tuple[str, ...] = ("navigate", "brush", "eraser", "fill", "smart_brush", "seeds", "click", "lasso")
_TOOL_SPECS = {  # name -> (button text, shortcut, tip)
    "navigate": ("Navigate", "N", "Left-click moves the crosshair (no editing)"),
    "brush": ("Brush", "B", "Paint the active label (Shift + drag erases)"),
    "eraser": ("Eraser", "E", "Erase voxels (only the active label with 'Empty voxels only')"),
    "fill": ("Fill", "F", "Flood-fill the clicked region of the slice with the active label"),
    "smart_brush": ("Smart", "S", "Smart brush: paints only voxels similar to, and connected to, the one "
                    "under the brush centre (Tolerance below)"),
    "seeds": ("Grow", "G", "Grow from seeds: paint a few strokes of each label, Shift + drag for "
              "background; the labels grow into the scan (preview: Enter accepts, Esc discards)"),
    "click": ("Click", "C", "Click to segment: a click inside a structure grows a region from it "
              "(Tolerance below; preview: Enter accepts, Esc discards)"),
    "lasso": ("Lasso", "L", "Draw a closed outline on a slice to fill it (Shift + drag erases it)"),
}
#: Tools whose results wait for Accept / Discard.
PREVIEW_TOOL_NAMES = ("seeds", "click")
_PAINT_OVER = (("all", "All labels"), ("empty", "Empty voxels only"), ("label", "Only label:"))
MAX_SIZE = 200.0


class ToolPanel(QtWidgets.QWidget):
    """Tool selection and brush settings (edits ``brush`` in place)."""

    tool_changed = QtCore.Signal(str)
    settings_changed = QtCore.Signal()
    interpolate_requested = QtCore.Signal()
    fill_holes_requested = QtCore.Signal(str)  # "3d" | "2d"
    accept_requested = QtCore.Signal()
    discard_requested = QtCore.Signal()
    tolerance_changed = QtCore.Signal(float)  # 0..1

    def __init__(self, brush: BrushSettings, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tool_panel")
        self.brush = brush
        self._tool = "navigate"
        self._syncing = False
        self._busy = False
        self._preview_active = False
        # name -> QAction, like MainWindow.named_actions
        self.named_actions: dict[str, QtGui.QAction] = {}
        self._build()
        self.sync_from_brush()
        self.set_tool("navigate")

    # ----- construction ----------------------------------------------------------------
    def _build(self) -> None:
        tools_box = QtWidgets.QGridLayout()
        tools_box.setSpacing(2)
        self.tool_group = QtGui.QActionGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QtWidgets.QToolButton] = {}
        for name in TOOL_NAMES:
            text, key, tip = _TOOL_SPECS[name]
            act = QtGui.QAction(text, self)
            act.setObjectName(f"action_tool_{name}")
            act.setCheckable(True)
            act.setShortcut(QtGui.QKeySequence(key))
            act.setToolTip(f"{tip} ({key})")
            act.setStatusTip(tip)
            act.setProperty("group", "Tools")
            act.triggered.connect(lambda _=False, name=name: self.set_tool(name))
            self.tool_group.addAction(act)
            self.named_actions[f"tool_{name}"] = act
            btn = QtWidgets.QToolButton()
            btn.setDefaultAction(act)
            btn.setObjectName(f"tool_button_{name}")
            btn.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
            btn.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
            self.tool_buttons[name] = btn
            n = len(self.tool_buttons) - 1
            tools_box.addWidget(btn, n // 4, n % 4)
        for name, text, key, step in (("brush_smaller", "Smaller brush", "[", -1), ("brush_larger", "Larger brush", "]", 1)):
            act = QtGui.QAction(text, self)
            act.setObjectName(f"action_{name}")
            act.setShortcut(QtGui.QKeySequence(key))
            act.setProperty("group", "Tools")
            act.triggered.connect(lambda _=False, step=step: self.step_size(step))
            self.named_actions[name] = act
        for name, text, keys, signal in (("preview_accept", "Accept preview", ("Return", "Enter"), self.accept_requested),
                                         ("preview_discard", "Discard preview", ("Esc",), self.discard_requested)):
            act = QtGui.QAction(text, self)
            act.setObjectName(f"action_{name}")
            act.setShortcuts([QtGui.QKeySequence(k) for k in keys])
            act.setProperty("group", "Tools")
            act.setEnabled(False)
            act.triggered.connect(signal)
            self.named_actions[name] = act

        # PySide6 sets Qt properties given as constructor keywords (objectName=..., decimals=...);
        # its stubs do not list them, hence the type: ignore on those calls
        self.shape_combo = QtWidgets.QComboBox(objectName="brush_shape")  # type: ignore[call-arg]
        self.shape_combo.addItem("Round", "round")
        self.shape_combo.addItem("Square", "square")
        self.size_spin = QtWidgets.QDoubleSpinBox(objectName="brush_size", decimals=1, minimum=0.5,  # type: ignore[call-arg]
                                                  maximum=MAX_SIZE, singleStep=1.0)
        self.size_spin.setToolTip("Brush diameter ([ and ] change it)")
        self.unit_combo = QtWidgets.QComboBox(objectName="brush_unit")  # type: ignore[call-arg]
        self.unit_combo.addItem("voxels", "voxel")
        self.unit_combo.addItem("mm", "mm")
        size_row = QtWidgets.QHBoxLayout()
        size_row.addWidget(self.size_spin, 1)
        size_row.addWidget(self.unit_combo)
        self.mode_2d = QtWidgets.QRadioButton("2D (this slice)", objectName="brush_2d")  # type: ignore[call-overload]
        self.mode_3d = QtWidgets.QRadioButton("3D (sphere)", objectName="brush_3d")  # type: ignore[call-overload]
        mode_row = QtWidgets.QHBoxLayout()
        mode_row.addWidget(self.mode_2d)
        mode_row.addWidget(self.mode_3d)
        self.paint_over_combo = QtWidgets.QComboBox(objectName="paint_over")  # type: ignore[call-arg]
        for value, text in _PAINT_OVER:
            self.paint_over_combo.addItem(text, value)
        self.paint_over_combo.setToolTip("Which voxels the brush, eraser and fill may change")
        self.paint_over_label = QtWidgets.QComboBox(objectName="paint_over_label")  # type: ignore[call-arg]
        over_row = QtWidgets.QHBoxLayout()
        over_row.addWidget(self.paint_over_combo, 1)
        over_row.addWidget(self.paint_over_label, 1)

        self.threshold_check = QtWidgets.QCheckBox("Only intensities in", objectName="threshold_enabled")  # type: ignore[call-overload]
        self.threshold_check.setToolTip("Threshold paint: only voxels whose scan intensity is in [low, high]")
        self.threshold_low = QtWidgets.QDoubleSpinBox(objectName="threshold_low", decimals=1,  # type: ignore[call-arg]
                                                      minimum=-1e9, maximum=1e9, singleStep=10.0)
        self.threshold_high = QtWidgets.QDoubleSpinBox(objectName="threshold_high", decimals=1,  # type: ignore[call-arg]
                                                       minimum=-1e9, maximum=1e9, singleStep=10.0)
        thr_row = QtWidgets.QHBoxLayout()
        thr_row.addWidget(self.threshold_low, 1)
        thr_row.addWidget(QtWidgets.QLabel("to"))
        thr_row.addWidget(self.threshold_high, 1)

        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Shape", self.shape_combo)
        form.addRow("Size", size_row)
        form.addRow("Brush", mode_row)
        form.addRow("Paint over", over_row)
        form.addRow(self.threshold_check)
        form.addRow("", thr_row)

        self.interpolate_button = QtWidgets.QPushButton("Interpolate slices", objectName="interpolate_button")  # type: ignore[call-overload]
        self.interpolate_button.setToolTip("Fill the slices between the drawn slices of the active label "
                                           "(along the active view's axis); one undo step")
        self.fill_holes_button = QtWidgets.QPushButton("Fill holes", objectName="fill_holes_button")  # type: ignore[call-overload]
        self.fill_holes_button.setToolTip("Fill the holes of the active label; one undo step")
        self.fill_holes_mode = QtWidgets.QComboBox(objectName="fill_holes_mode")  # type: ignore[call-arg]
        self.fill_holes_mode.addItem("in 3D", "3d")
        self.fill_holes_mode.addItem("per slice", "2d")
        self.tolerance_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, objectName="tolerance")  # type: ignore[call-overload]
        self.tolerance_slider.setRange(0, 100)
        self.tolerance_slider.setValue(50)
        self.tolerance_slider.setToolTip("How different from the clicked voxel (click) or the brush centre "
                                         "(smart brush) a voxel may be and still be included")
        self.tolerance_slider.valueChanged.connect(lambda v: self.tolerance_changed.emit(v / 100.0))
        form.addRow("Tolerance", self.tolerance_slider)
        self.preview_label = QtWidgets.QLabel("", objectName="preview_status")  # type: ignore[call-overload]
        self.preview_label.setWordWrap(True)
        self.accept_button = QtWidgets.QToolButton(objectName="preview_accept")  # type: ignore[call-arg]
        self.accept_button.setDefaultAction(self.named_actions["preview_accept"])
        self.discard_button = QtWidgets.QToolButton(objectName="preview_discard")  # type: ignore[call-arg]
        self.discard_button.setDefaultAction(self.named_actions["preview_discard"])
        preview_row = QtWidgets.QHBoxLayout()
        preview_row.addWidget(self.accept_button, 1)
        preview_row.addWidget(self.discard_button, 1)
        for button in (self.accept_button, self.discard_button):
            button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        form.addRow(preview_row)
        form.addRow(self.preview_label)
        self._form, self._preview_row = form, preview_row

        ops = QtWidgets.QGridLayout()
        ops.addWidget(self.interpolate_button, 0, 0, 1, 2)
        ops.addWidget(self.fill_holes_button, 1, 0)
        ops.addWidget(self.fill_holes_mode, 1, 1)

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(tools_box)
        lay.addLayout(form)
        lay.addLayout(ops)
        lay.addStretch(1)

        for combo in (self.shape_combo, self.unit_combo, self.paint_over_combo, self.paint_over_label):
            combo.currentIndexChanged.connect(self._apply)
        for spin in (self.size_spin, self.threshold_low, self.threshold_high):
            spin.valueChanged.connect(self._apply)
        for toggle in (self.mode_2d, self.mode_3d, self.threshold_check):
            toggle.toggled.connect(self._apply)
        self.unit_combo.currentIndexChanged.connect(self._on_unit_changed)
        self.interpolate_button.clicked.connect(self.interpolate_requested)
        self.fill_holes_button.clicked.connect(
            lambda: self.fill_holes_requested.emit(str(self.fill_holes_mode.currentData())))

    # ----- tools -------------------------------------------------------------------------
    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, name: str) -> None:
        if name not in TOOL_NAMES:
            raise ValueError(f"tool must be one of {TOOL_NAMES}, got {name!r}")
        self.named_actions[f"tool_{name}"].setChecked(True)
        changed = name != self._tool
        self._tool = name
        self._show_tool_rows()
        if changed:
            self.tool_changed.emit(name)

    def _show_tool_rows(self) -> None:
        """Tolerance only for the tools that use it, Accept / Discard only for the preview
        tools (or while a preview waits): the panel stays short for the brush."""
        form = getattr(self, "_form", None)
        if form is None:
            return
        form.setRowVisible(self.tolerance_slider, self._tool in ("click", "smart_brush"))
        preview = self._tool in PREVIEW_TOOL_NAMES or self._preview_active
        form.setRowVisible(self._preview_row, preview)
        form.setRowVisible(self.preview_label, preview)

    @property
    def tolerance(self) -> float:
        """The tolerance slider, 0..1."""
        return self.tolerance_slider.value() / 100.0

    def set_preview_state(self, active: bool, text: str = "") -> None:
        """Enable Accept / Discard while a preview waits; ``text`` says what it holds."""
        self._preview_active = bool(active)
        self.preview_label.setText(text)
        self._show_tool_rows()
        self._update_enabled()

    def step_size(self, step: int) -> None:
        """``[`` / ``]``: one voxel (or 1 mm) smaller/larger; steps of 10 % above 10."""
        size = self.size_spin.value()
        delta = max(1.0, round(size * 0.1)) if size >= 10 else 1.0
        self.size_spin.setValue(min(MAX_SIZE, max(1.0, size + step * delta)))

    # ----- settings ----------------------------------------------------------------------
    def set_labels(self, labels: LabelTable) -> None:
        """Fill the paint-over label list from the label table."""
        current = self.brush.paint_over_label
        self._syncing = True
        try:
            self.paint_over_label.clear()
            self.paint_over_label.addItem("Clear (0)", 0)
            for lab in labels:
                self.paint_over_label.addItem(f"{lab.value}: {lab.name}", lab.value)
            idx = self.paint_over_label.findData(current)
            self.paint_over_label.setCurrentIndex(max(0, idx))
        finally:
            self._syncing = False

    def set_intensity_range(self, low: float, high: float, default: tuple[float, float] | None = None) -> None:
        """Range of the threshold boxes (the scan's min/max); ``default`` fills them."""
        self._syncing = True
        try:
            for box in (self.threshold_low, self.threshold_high):
                box.setRange(float(low), float(high))
                box.setSingleStep(max(0.1, (high - low) / 100.0))
            if default is not None:
                self.threshold_low.setValue(float(default[0]))
                self.threshold_high.setValue(float(default[1]))
        finally:
            self._syncing = False
        self._apply()

    def sync_from_brush(self) -> None:
        """Show the values of :attr:`brush` (after it was changed elsewhere)."""
        b = self.brush
        self._syncing = True
        try:
            self.shape_combo.setCurrentIndex(self.shape_combo.findData(b.shape))
            self.unit_combo.setCurrentIndex(self.unit_combo.findData(b.unit))
            self._on_unit_changed()
            self.size_spin.setValue(float(b.size))
            (self.mode_3d if b.mode == "3d" else self.mode_2d).setChecked(True)
            self.paint_over_combo.setCurrentIndex(self.paint_over_combo.findData(b.paint_over))
            idx = self.paint_over_label.findData(b.paint_over_label)
            if idx >= 0:
                self.paint_over_label.setCurrentIndex(idx)
            self.threshold_check.setChecked(b.threshold is not None)
            if b.threshold is not None:
                self.threshold_low.setValue(float(b.threshold[0]))
                self.threshold_high.setValue(float(b.threshold[1]))
        finally:
            self._syncing = False
        self._update_enabled()

    def _on_unit_changed(self) -> None:
        voxels = self.unit_combo.currentData() == "voxel"
        self.size_spin.setDecimals(0 if voxels else 1)
        self.size_spin.setSingleStep(1.0)
        self.size_spin.setMinimum(1.0 if voxels else 0.5)

    def _apply(self, *_args) -> None:
        if self._syncing:
            return
        b = self.brush
        b.shape = str(self.shape_combo.currentData())
        b.unit = str(self.unit_combo.currentData())
        b.size = float(self.size_spin.value())
        b.mode = "3d" if self.mode_3d.isChecked() else "2d"
        b.paint_over = str(self.paint_over_combo.currentData())
        b.paint_over_label = int(self.paint_over_label.currentData() or 0)
        lo, hi = self.threshold_low.value(), self.threshold_high.value()
        if self.threshold_check.isChecked():
            if lo > hi:  # keep the pair valid while the user types
                lo, hi = hi, lo
            b.threshold = (lo, hi)
        else:
            b.threshold = None
        self._update_enabled()
        self.settings_changed.emit()

    def set_busy(self, busy: bool) -> None:
        """Disable the one-shot op buttons while one runs in a worker."""
        self._busy = bool(busy)
        self._update_enabled()

    @property
    def busy(self) -> bool:
        return self._busy

    def _update_enabled(self) -> None:
        for w in (self.interpolate_button, self.fill_holes_button, self.fill_holes_mode):
            w.setEnabled(not self._busy)
        self.named_actions["preview_accept"].setEnabled(self._preview_active and not self._busy)
        self.named_actions["preview_discard"].setEnabled(self._preview_active)
        self.paint_over_label.setEnabled(self.paint_over_combo.currentData() == "label")
        on = self.threshold_check.isChecked()
        self.threshold_low.setEnabled(on)
        self.threshold_high.setEnabled(on)
