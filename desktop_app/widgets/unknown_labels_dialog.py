"""The question asked when a corrected mask holds label values the project does not have.

Nothing is remapped silently: the dialog names each value with the name and colour the
document's label table gives it (editable here), and offers "Add label(s) to project"
(a new label-schema version) or Cancel. A view only: the dataset controller opens it
(non-blocking) and reads :meth:`UnknownLabelsDialog.labels` when it is accepted.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.widgets.label_editor import swatch_icon


class UnknownLabelsDialog(QtWidgets.QDialog):
    """Lists ``labels`` ``[(value, name, (r, g, b))]`` the project lacks; Add or Cancel."""

    def __init__(self, project_name: str, labels: list[tuple[int, str, tuple[int, int, int]]],
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("unknown_labels_dialog")
        self.setWindowTitle("Labels the project does not have")
        self._colours = {v: c for v, _n, c in labels}
        lay = QtWidgets.QVBoxLayout(self)
        values = ", ".join(f"{v} ({n})" for v, n, _c in labels)
        intro = QtWidgets.QLabel(
            f"The mask holds label value{'s' if len(labels) != 1 else ''} {values}, which project "
            f"{project_name!r} does not have. SegLoop never renumbers labels, so the case is not added as it is.\n\n"
            "Add them to the project (a new label-schema version: earlier cases and models keep their meaning), "
            "or cancel and change the mask.")
        intro.setObjectName("unknown_labels_text")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.table = QtWidgets.QTableWidget(len(labels), 3)
        self.table.setObjectName("unknown_labels_table")
        self.table.setHorizontalHeaderLabels(["Value", "Name", "Colour"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        for r, (value, name, colour) in enumerate(labels):
            item = QtWidgets.QTableWidgetItem(str(value))
            item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(r, 0, item)
            self.table.setItem(r, 1, QtWidgets.QTableWidgetItem(name))
            swatch = QtWidgets.QTableWidgetItem(swatch_icon(colour), "#%02x%02x%02x" % colour)
            swatch.setFlags(swatch.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
            swatch.setData(QtCore.Qt.ItemDataRole.UserRole, QtGui.QColor(*colour))
            self.table.setItem(r, 2, swatch)
        self.table.resizeColumnsToContents()
        lay.addWidget(self.table)
        buttons = QtWidgets.QDialogButtonBox()
        self.add_button = buttons.addButton(f"Add label{'s' if len(labels) != 1 else ''} to project",
                                            QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setObjectName("add_labels_button")
        self.cancel_button = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.setObjectName("cancel_add_labels_button")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(520, 200 + 30 * len(labels))

    def labels(self) -> dict[int, str]:
        """``{value: name}`` as shown (names possibly edited)."""
        return {int(self._text(r, 0)): self._text(r, 1).strip() for r in range(self.table.rowCount())}

    def _text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        assert item is not None  # every cell is filled when the dialog is built
        return item.text()

    def colours(self) -> dict[int, tuple[int, int, int]]:
        return dict(self._colours)
