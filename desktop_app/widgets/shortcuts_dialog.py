"""Help > Shortcuts: a table generated from the window's actual QActions (never a
hand-written list), plus the mouse bindings declared next to the view code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.viewer.slice_view import MOUSE_HELP


def shortcut_rows(actions: Mapping[str, QtGui.QAction]) -> list[tuple[str, str, str]]:
    """``(group, action text, shortcuts)`` for every action that has a shortcut.

    ``group`` is the action's ``"group"`` property (its menu), set by the main window.
    """
    rows = []
    for action in actions.values():
        keys = [s.toString(QtGui.QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if not s.isEmpty()]
        if not keys:
            continue
        text = action.text().replace("&", "").rstrip(".").strip()
        group = str(action.property("group") or "")
        rows.append((group, text, ", ".join(keys)))
    return rows


class ShortcutsDialog(QtWidgets.QDialog):
    """Read-only table of keyboard shortcuts and mouse bindings."""

    def __init__(self, actions: Mapping[str, QtGui.QAction], parent=None,
                 mouse: Iterable[tuple[str, str]] = MOUSE_HELP) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("shortcuts_dialog")
        rows = shortcut_rows(actions) + [("Mouse", what, how) for how, what in mouse]
        self.table = QtWidgets.QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Group", "Action", "Shortcut"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        self.table.resizeColumnsToContents()
        content_width = sum(self.table.columnWidth(c) for c in range(3))
        # group and shortcut keep their full width; the action column takes what is left
        # (eliding only when the screen is narrower than the table), so no column is cut off
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(close)
        self.resize(self._fitting_width(content_width), 520)

    def _fitting_width(self, content_width: int) -> int:
        """Dialog width that shows every column whole (within the screen's width)."""
        lay = self.layout()
        margins = lay.contentsMargins() if lay is not None else QtCore.QMargins(11, 11, 11, 11)
        width = (content_width + self.table.verticalScrollBar().sizeHint().width() + 2 * self.table.frameWidth()
                 + margins.left() + margins.right() + 8)
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        limit = int(screen.availableGeometry().width() * 0.9) if screen is not None else width
        return max(560, min(width, limit))

    def rows(self) -> list[tuple[str, str, str]]:
        return [(self._text(r, 0), self._text(r, 1), self._text(r, 2)) for r in range(self.table.rowCount())]

    def _text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        assert item is not None  # every cell is filled when the dialog is built
        return item.text()
