"""The "Model versions" panel: the registry as a table, promote / roll back / delete / compare.

A view only; :class:`desktop_app.controllers.versions.VersionsController` talks to the
registry (its promote / roll back / delete run in a worker: the buttons are disabled
meanwhile). Select one row to promote or delete it, two rows to compare them on the open scan.

Validation Dice is shown honestly (:func:`unet_engine.training.validation.validation_text`): a version
scored on fewer than 2 validation cases reads "no validation yet", and a label absent from
every validation case reads "n/a", never 1.0.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.validation_info import completed_metrics, version_val_cases
from unet_engine.training.validation import MIN_VALIDATION_CASES, validation_text

BASE_COLUMNS = ("", "Version", "Created", "Parent", "Source")


def _short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16] if iso else ""


class VersionsPanel(QtWidgets.QWidget):
    promote_requested = QtCore.Signal(str)
    rollback_requested = QtCore.Signal()
    delete_requested = QtCore.Signal(str)
    compare_requested = QtCore.Signal(str, str)
    refresh_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("versions_panel")
        lay = QtWidgets.QVBoxLayout(self)
        self.table = QtWidgets.QTableWidget(0, len(BASE_COLUMNS))
        self.table.setObjectName("versions_table")
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        # the table takes the room left (it scrolls itself): its size hint must not push the
        # Promote row below the dock's fold
        self.table.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
        self.table.setMinimumHeight(60)
        lay.addWidget(self.table, 1)
        row = QtWidgets.QHBoxLayout()
        self.promote_button = QtWidgets.QPushButton("Promote")
        self.rollback_button = QtWidgets.QPushButton("Roll back")
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.compare_button = QtWidgets.QPushButton("Compare on scan")
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        for b in (self.promote_button, self.rollback_button, self.delete_button, self.compare_button,
                  self.refresh_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.compare_label = QtWidgets.QLabel("Select two versions and press Compare to see where they disagree.")
        self.compare_label.setObjectName("compare_label")
        self.compare_label.setWordWrap(True)
        lay.addWidget(self.compare_label)
        self.promote_button.clicked.connect(lambda: self._one(self.promote_requested))
        self.delete_button.clicked.connect(lambda: self._one(self.delete_requested))
        self.rollback_button.clicked.connect(self.rollback_requested)
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.compare_button.clicked.connect(self._compare)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self._versions: list[str] = []
        self._update_buttons()

    # ----- content --------------------------------------------------------------------------
    def set_versions(self, versions: list[Any], label_names: list[str] | None = None) -> None:
        """Fill the table from registry :class:`~unet_engine.registry.versions.VersionInfo` objects."""
        selected = set(self.selected_versions())
        names = list(label_names or [])
        for v in versions:
            for n in (v.metrics.get("val_dice") or {}):
                if n not in names:
                    names.append(n)
        cols = [*BASE_COLUMNS, *[f"Dice {n}" for n in names], "Mean Dice"]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        self.table.setRowCount(len(versions))
        self._versions = [v.version for v in versions]
        bold = QtGui.QFont()
        bold.setBold(True)
        for r, v in enumerate(reversed(versions)):  # newest first
            metrics = completed_metrics(v.metrics, version_val_cases(v))
            cells = ["●" if v.active else "", v.version, _short_time(v.created), v.parent or "—", v.source,
                     *dice_cells(metrics, names)]
            tip = validation_text(metrics) if v.metrics else "not scored on a validation split"
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, v.version)
                item.setToolTip(tip)
                if v.active:
                    item.setFont(bold)
                    item.setToolTip(f"the active model (used for inference and as the start of fine-tuning); {tip}")
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        for r in range(self.table.rowCount()):
            if self.version_at(r) in selected:
                self.table.selectRow(r)
        self._update_buttons()

    def version_at(self, row: int) -> str:
        item = self.table.item(row, 1)
        assert item is not None  # refresh() fills every cell
        return str(item.text())

    def row_of(self, version: str) -> int:
        for r in range(self.table.rowCount()):
            if self.version_at(r) == version:
                return r
        return -1

    def select(self, *versions: str) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.MultiSelection)
        for v in versions:
            r = self.row_of(v)
            if r >= 0:
                self.table.selectRow(r)
        self.table.setSelectionMode(mode)

    def selected_versions(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.version_at(r) for r in rows]

    def set_compare_text(self, text: str) -> None:
        self.compare_label.setText(text)

    def set_busy(self, busy: bool, registry: bool = False) -> None:
        """``busy``: a comparison runs (Compare disabled); ``registry``: a promote / roll back /
        delete runs in a worker (those three disabled until it ends)."""
        self._busy = busy
        self._registry_busy = registry
        self._update_buttons()

    # ----- internals ------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        n = len(self.selected_versions())
        busy = getattr(self, "_busy", False)
        reg_busy = getattr(self, "_registry_busy", False)
        self.promote_button.setEnabled(n == 1 and not reg_busy)
        self.delete_button.setEnabled(n == 1 and not reg_busy)
        self.compare_button.setEnabled(n == 2 and not busy)
        self.rollback_button.setEnabled(len(self._versions) > 1 and not reg_busy)

    def _one(self, signal: QtCore.SignalInstance) -> None:
        sel = self.selected_versions()
        if len(sel) == 1:
            signal.emit(sel[0])

    def _compare(self) -> None:
        sel = self.selected_versions()
        if len(sel) == 2:
            a, b = sorted(sel, key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)
            self.compare_requested.emit(a, b)


def _fmt(x: Any) -> str:
    return f"{float(x):.3f}" if isinstance(x, (int, float)) else "—"


def dice_cells(metrics: dict[str, Any], names: list[str]) -> list[str]:
    """The per-label Dice cells and the mean cell of one version: "—" per label and "no validation
    yet" below 2 validation cases, "n/a" for a label absent from every validation case."""
    cases = metrics.get("val_cases")
    if isinstance(cases, int) and cases < MIN_VALIDATION_CASES:
        return ["—" for _ in names] + ["no validation yet"]
    dice = metrics.get("val_dice") or {}
    na = set(metrics.get("val_na_labels") or [])
    return [("n/a" if n in na else _fmt(dice.get(n))) for n in names] + [_fmt(metrics.get("val_mean_dice"))]
