"""The toolbar's project switcher: "Project: [Hippocampus (MRI) v]". A view only: choosing
a project emits ``project_chosen(name)``; the project controller decides whether to switch
(and puts the combo back when it refuses)."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class ProjectSwitcher(QtWidgets.QWidget):
    project_chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("project_switcher")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        label = QtWidgets.QLabel("Project:")
        self.combo = QtWidgets.QComboBox()
        self.combo.setObjectName("project_combo")
        self.combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setMinimumContentsLength(14)
        self.combo.setToolTip("The open project: its labels, dataset and models (File > New project to add one)")
        label.setBuddy(self.combo)
        lay.addWidget(label)
        lay.addWidget(self.combo)
        self.combo.activated.connect(lambda i: self.project_chosen.emit(self.combo.itemText(i)))

    def set_projects(self, names: list[str], current: str | None) -> None:
        """List ``names`` with ``current`` selected (no signal)."""
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        self.combo.setCurrentIndex(names.index(current) if current in names else -1)
        self.combo.setEnabled(bool(names))
        self.combo.blockSignals(False)

    def current(self) -> str | None:
        return self.combo.currentText() or None
