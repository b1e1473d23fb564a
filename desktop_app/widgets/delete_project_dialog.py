"""File > Delete project…: choose a project to move to the trash (nothing is erased).

A view only: Delete emits ``delete_requested(name)``; the project controller asks for
confirmation and deletes in a worker. The open project cannot be deleted: choosing it
says so and disables Delete.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from unet_engine.projects import name_key


class DeleteProjectDialog(QtWidgets.QDialog):
    delete_requested = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("delete_project_dialog")
        self.setWindowTitle("Delete project")
        self._open: str | None = None
        lay = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel("The project's folder (dataset, model versions, plan) moves to the projects' "
                                 "trash folder (projects/.trash); nothing is erased.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.combo = QtWidgets.QComboBox()
        self.combo.setObjectName("delete_project_combo")
        lay.addWidget(self.combo)
        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("delete_project_message")
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        buttons = QtWidgets.QDialogButtonBox()
        self.delete_button = buttons.addButton("Delete…", QtWidgets.QDialogButtonBox.ButtonRole.DestructiveRole)
        self.delete_button.setObjectName("delete_project_button")
        self.close_button = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.close_button.clicked.connect(self.reject)
        self.delete_button.clicked.connect(lambda: self.delete_requested.emit(self.combo.currentText()))
        lay.addWidget(buttons)
        self.combo.currentIndexChanged.connect(self._update)
        self.resize(460, 180)

    def set_projects(self, names: list[str], open_project: str | None) -> None:
        self._open = open_project
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        others = [n for n in names if open_project is None or name_key(n) != name_key(open_project)]
        self.combo.setCurrentIndex(names.index(others[0]) if others else (0 if names else -1))
        self.combo.blockSignals(False)
        self._update()

    def select(self, name: str) -> None:
        self.combo.setCurrentIndex(self.combo.findText(name))

    def _update(self, *_args: object) -> None:
        name = self.combo.currentText()
        is_open = bool(name) and self._open is not None and name_key(name) == name_key(self._open)
        if not name:
            self.show_message("There is no project to delete.", error=False)
        elif is_open:
            self.show_message(f"Project {name!r} is open: switch to another project before deleting it.")
        else:
            self.show_message("")
        self.delete_button.setEnabled(bool(name) and not is_open)

    def show_message(self, text: str, error: bool = True) -> None:
        self.message.setStyleSheet("color: #c0392b;" if error and text else "")
        self.message.setText(text)
