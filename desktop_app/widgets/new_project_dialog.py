"""File > New project…: name, modality, labels (typed in a table or imported from an ITK-SNAP
label file), and what the project starts from (empty / the bundled model / a checkpoint folder).

A view only: Create emits ``create_requested(spec)`` with what was typed, unvalidated;
the project controller creates the project in a worker and calls :meth:`show_error` with
the store's message when it refuses (duplicate or invalid name, bad labels, labels that
contradict the start model), or closes the dialog when it is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.label_io import read_itksnap_labels
from desktop_app.state.labels import as_rgb, default_colour
from desktop_app.widgets.label_editor import LABEL_FILE_FILTER, swatch_icon
from unet_engine.errors import SegLoopError

MODALITIES = (("MR", "MR (magnetic resonance)"), ("CT", "CT (Hounsfield units)"), ("US", "Ultrasound"),
              ("other", "Other"))
STARTS = (("empty", "Empty: train a first model from corrected cases"),
          ("default", "SegLoop's bundled hippocampus model (MR)"),
          ("folder", "A model checkpoint folder…"))
_COLOUR_ROLE = QtCore.Qt.ItemDataRole.UserRole


class NewProjectDialog(QtWidgets.QDialog):
    create_requested = QtCore.Signal(dict)

    def __init__(self, parent: QtWidgets.QWidget | None = None, start_dir: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("new_project_dialog")
        self.setWindowTitle("New project")
        self._start_dir = start_dir
        lay = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        self.name_edit = QtWidgets.QLineEdit()
        self.name_edit.setObjectName("new_project_name")
        self.name_edit.setPlaceholderText("e.g. Spleen CT")
        self.modality = QtWidgets.QComboBox()
        self.modality.setObjectName("new_project_modality")
        for key, text in MODALITIES:
            self.modality.addItem(text, key)
        form.addRow("&Name", self.name_edit)
        form.addRow("&Modality", self.modality)
        lay.addLayout(form)

        box = QtWidgets.QGroupBox("Labels (value, name, colour)")
        bl = QtWidgets.QVBoxLayout(box)
        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setObjectName("new_project_labels")
        self.table.setHorizontalHeaderLabels(["Value", "Name", "Colour"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(140)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)
        bl.addWidget(self.table)
        row = QtWidgets.QHBoxLayout()
        self.add_button = QtWidgets.QPushButton("Add label")
        self.add_button.setObjectName("new_project_add_label")
        self.remove_button = QtWidgets.QPushButton("Remove label")
        self.import_button = QtWidgets.QPushButton("Import ITK-SNAP label file…")
        self.import_button.setObjectName("new_project_import_labels")
        for b in (self.add_button, self.remove_button, self.import_button):
            row.addWidget(b)
        row.addStretch(1)
        bl.addLayout(row)
        hint = QtWidgets.QLabel("Starting from a model, the labels may be left empty: the model's are taken.")
        hint.setWordWrap(True)
        bl.addWidget(hint)
        lay.addWidget(box)

        start = QtWidgets.QFormLayout()
        self.start_combo = QtWidgets.QComboBox()
        self.start_combo.setObjectName("new_project_start")
        for key, text in STARTS:
            self.start_combo.addItem(text, key)
        self.checkpoint_edit = QtWidgets.QLineEdit()
        self.checkpoint_edit.setObjectName("new_project_checkpoint")
        self.checkpoint_edit.setPlaceholderText("folder with model.safetensors and card.json")
        self.browse_button = QtWidgets.QPushButton("Browse…")
        crow = QtWidgets.QHBoxLayout()
        crow.addWidget(self.checkpoint_edit, 1)
        crow.addWidget(self.browse_button)
        start.addRow("&Start from", self.start_combo)
        start.addRow("Checkpoint", crow)
        lay.addLayout(start)

        self.error_label = QtWidgets.QLabel("")
        self.error_label.setObjectName("new_project_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.error_label)
        buttons = QtWidgets.QDialogButtonBox()
        self.create_button = buttons.addButton("Create project", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.create_button.setObjectName("new_project_create")
        self.cancel_button = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._create)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

        self.add_button.clicked.connect(lambda: self.add_label_row())
        self.remove_button.clicked.connect(self._remove_selected)
        self.import_button.clicked.connect(lambda: self.import_labels())
        self.browse_button.clicked.connect(self._browse)
        self.start_combo.currentIndexChanged.connect(self._start_changed)
        self._start_changed()
        self.resize(560, 560)

    # ----- labels --------------------------------------------------------------------------
    def add_label_row(self, value: int | None = None, name: str | None = None,
                      colour: tuple[int, int, int] | None = None) -> int:
        """Append a row (next free value, "Label N", a default colour unless given); returns it."""
        used = {int(v) for v, _n, _c in self.labels() if str(v).strip().isdigit()}
        if value is None:
            value = next(v for v in range(1, 65536) if v not in used)
        rgb = as_rgb(colour) if colour is not None else default_colour(int(value))
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QtWidgets.QTableWidgetItem(str(value)))
        self.table.setItem(r, 1, QtWidgets.QTableWidgetItem(name if name is not None else f"Label {value}"))
        self._set_colour(r, rgb)
        return r

    def _set_colour(self, row: int, colour: tuple[int, int, int]) -> None:
        item = QtWidgets.QTableWidgetItem(swatch_icon(colour), "#%02x%02x%02x" % tuple(colour))
        item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
        item.setData(_COLOUR_ROLE, tuple(int(c) for c in colour))
        item.setToolTip("Double-click to choose the colour")
        self.table.setItem(row, 2, item)

    def set_labels(self, labels: list[tuple[int, str, tuple[int, int, int]]]) -> None:
        self.table.setRowCount(0)
        for value, name, colour in labels:
            self.add_label_row(value, name, colour)

    def labels(self) -> list[tuple[Any, str, tuple[int, int, int] | None]]:
        """Rows as typed: ``(value text, name, colour)`` (the store validates them)."""
        out = []
        for r in range(self.table.rowCount()):
            value_item, name_item = self.table.item(r, 0), self.table.item(r, 1)
            value = value_item.text().strip() if value_item else ""
            name = name_item.text().strip() if name_item else ""
            colour_item = self.table.item(r, 2)
            colour = colour_item.data(_COLOUR_ROLE) if colour_item is not None else None
            out.append((value, name, tuple(colour) if colour else None))
        return out

    def import_labels(self, path: str | Path | None = None) -> bool:
        """Fill the table from an ITK-SNAP label description file (asks for it when ``path`` is None)."""
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import labels", self._start_dir, LABEL_FILE_FILTER)
            if not path:
                return False
        try:
            table = read_itksnap_labels(path)
        except SegLoopError as exc:
            self.show_error(f"Could not import the labels: {exc}")
            return False
        if not len(list(table)):
            self.show_error(f"Could not import the labels: {Path(path).name} lists no label other than 0")
            return False
        self.set_labels([(lab.value, lab.name, lab.colour) for lab in table])
        self.error_label.setText("")
        return True

    def _remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)

    def _cell_double_clicked(self, row: int, column: int) -> None:
        if column != 2:
            return
        item = self.table.item(row, 2)
        assert item is not None  # add_label_row() fills every cell
        current = item.data(_COLOUR_ROLE) or (255, 0, 0)
        colour = QtWidgets.QColorDialog.getColor(QtGui.QColor(*current), self, "Label colour")
        if colour.isValid():
            self._set_colour(row, (colour.red(), colour.green(), colour.blue()))

    # ----- start -----------------------------------------------------------------------------
    def _start_changed(self, *_args: Any) -> None:
        folder = self.start_combo.currentData() == "folder"
        self.checkpoint_edit.setEnabled(folder)
        self.browse_button.setEnabled(folder)

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Model checkpoint folder", self._start_dir)
        if path:
            self.checkpoint_edit.setText(path)

    # ----- create ----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """What was typed: name, modality, labels (rows; None when the table is empty), start."""
        start = self.start_combo.currentData()
        if start == "folder":
            start = self.checkpoint_edit.text().strip() or None
            if start is None:
                raise ValueError("choose the checkpoint folder to start from (or another start)")
        labels = self.labels()
        return {"name": self.name_edit.text(), "modality": self.modality.currentData(),
                "labels": labels or None, "start_model": start}

    def _create(self) -> None:
        try:
            spec = self.spec()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self.set_busy(True)
        self.create_requested.emit(spec)

    def set_busy(self, busy: bool) -> None:
        self.create_button.setEnabled(not busy)
        if busy:
            self.error_label.setStyleSheet("")
            self.error_label.setText("Creating the project…")

    def show_error(self, text: str) -> None:
        self.set_busy(False)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.setText(text)
