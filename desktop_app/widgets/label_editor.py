"""Label editor panel: the segmentation labels with colour swatch, name and visibility;
add, rename, recolour, delete, merge; the active (painting) label; ITK-SNAP label files.

* Table-only edits (add, rename, recolour, show/hide, import) change the document's
  :class:`~desktop_app.state.labels.LabelTable` directly; the views redraw on its event.
* Delete and merge rewrite voxels and go through the
  :class:`~desktop_app.state.tools.ToolController`: one undo step each, undo brings the
  voxels and the table entry back.
* Delete / merge compute in a worker when :attr:`LabelEditor.runner` is set (the editing
  controller sets its ``run_patch_job``; their buttons are disabled meanwhile by
  :meth:`LabelEditor.set_busy`); without a runner they run synchronously.
* The selected row is the active label: ``tools.brush.label`` follows it and
  ``active_label_changed(value)`` is emitted.

Every method that would open a dialog takes the answer as an optional argument, so tests
(and scripts) drive the panel without modal dialogs. Errors are emitted as
``error(title, exception)`` for the controller's error dialog.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.document import Document
from desktop_app.state.label_io import read_itksnap_labels, write_itksnap_labels
from desktop_app.state.label_ops import label_voxel_counts
from desktop_app.state.labels import Label
from desktop_app.state.tools import ToolController
from desktop_app.signals import disconnect_all

_VALUE_ROLE = QtCore.Qt.ItemDataRole.UserRole
COL_VALUE, COL_NAME, COL_SHOW = 0, 1, 2
LABEL_FILE_FILTER = "ITK-SNAP label descriptions (*.txt *.label);;All files (*)"


def swatch_icon(rgb: tuple[int, int, int], size: int = 14) -> QtGui.QIcon:
    pm = QtGui.QPixmap(size, size)
    pm.fill(QtGui.QColor(*rgb))
    painter = QtGui.QPainter(pm)
    painter.setPen(QtGui.QColor(40, 40, 40))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return QtGui.QIcon(pm)


class LabelEditor(QtWidgets.QWidget):
    """The label list with editing buttons; the current row is the painting label."""

    active_label_changed = QtCore.Signal(int)
    error = QtCore.Signal(str, object)  # title, exception

    def __init__(self, document: Document, tools: ToolController, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("label_editor")
        self.document = document
        self.tools = tools
        self._filling = False
        self._busy = False
        #: ``runner(job, description, error_title, on_done) -> bool`` runs a state-layer
        #: compute job off the GUI thread and applies its patch (None: run synchronously)
        self.runner: Callable[..., bool] | None = None
        self.last_dir = str(Path.home())

        # PySide6 sets Qt properties given as constructor keywords (objectName=...); its stubs
        # do not list them, hence the type: ignore on those calls
        self.tree = QtWidgets.QTreeWidget(objectName="label_tree")  # type: ignore[call-arg]
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Value", "Name", "Show"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.DoubleClicked
                                  | QtWidgets.QAbstractItemView.EditTrigger.EditKeyPressed)
        self.tree.setToolTip("Select the label to paint; double-click a name to rename; untick to hide")
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_VALUE, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_NAME, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_SHOW, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        self.tree.itemChanged.connect(self._on_item_changed)

        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        grid = QtWidgets.QGridLayout()
        grid.setSpacing(3)
        specs = (
            ("add", "Add", "Add a new label (next free value)", self.add_label),
            ("rename", "Rename...", "Rename the selected label", lambda: self.rename_label()),
            ("colour", "Colour...", "Choose the selected label's colour", lambda: self.recolour_label()),
            ("opacity", "Opacity...", "The selected label's opacity over the scan and in the 3D view",
             lambda: self.set_label_opacity()),
            ("delete", "Delete", "Delete the selected label and clear its voxels (undoable)", lambda: self.delete_label()),
            ("merge", "Merge into...", "Relabel the selected label's voxels as another label (undoable)",
             lambda: self.merge_label()),
            ("import", "Import...", "Replace the labels by an ITK-SNAP label description file",
             lambda: self.import_labels()),
            ("export", "Export...", "Save the labels as an ITK-SNAP label description file",
             lambda: self.export_labels()),
        )
        for n, (name, text, tip, slot) in enumerate(specs):
            btn = QtWidgets.QPushButton(text, objectName=f"label_{name}_button")  # type: ignore[call-overload]
            btn.setToolTip(tip)
            btn.clicked.connect(lambda _=False, slot=slot: slot())
            self.buttons[name] = btn
            grid.addWidget(btn, n // 3, n % 3)

        self.active_label = QtWidgets.QLabel("", objectName="active_label")  # type: ignore[call-overload]
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.active_label)
        lay.addWidget(self.tree, 1)
        lay.addLayout(grid)

        document.labels.changed.connect(self.refresh)
        document.image_changed.connect(self.refresh)
        self.refresh()

    def detach(self) -> None:
        """Stop listening to the document (before the widget is destroyed)."""
        disconnect_all([(self.document.labels.changed, self.refresh), (self.document.image_changed, self.refresh)])

    # ----- list --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the rows from the label table, keeping the active label selected."""
        active = self.tools.brush.label
        self._filling = True
        try:
            self.tree.clear()
            for lab in self.document.labels:
                item = QtWidgets.QTreeWidgetItem()
                item.setData(COL_VALUE, _VALUE_ROLE, lab.value)
                item.setText(COL_VALUE, str(lab.value))
                item.setIcon(COL_VALUE, swatch_icon(lab.colour))
                item.setText(COL_NAME, lab.name)
                item.setToolTip(COL_NAME, f"{lab.name} (value {lab.value})")
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsEditable | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(COL_SHOW, QtCore.Qt.CheckState.Checked if lab.visible else QtCore.Qt.CheckState.Unchecked)
                self.tree.addTopLevelItem(item)
            current = self._item(active)
            if current is not None:
                self.tree.setCurrentItem(current)
        finally:
            self._filling = False
        self._update_active_text()
        self._update_enabled()

    def _row(self, n: int) -> QtWidgets.QTreeWidgetItem:
        item = self.tree.topLevelItem(n)
        assert item is not None  # n < topLevelItemCount()
        return item

    def _item(self, value: int) -> QtWidgets.QTreeWidgetItem | None:
        for n in range(self.tree.topLevelItemCount()):
            item = self._row(n)
            if int(item.data(COL_VALUE, _VALUE_ROLE)) == int(value):
                return item
        return None

    def selected_value(self) -> int | None:
        item = self.tree.currentItem()
        return None if item is None else int(item.data(COL_VALUE, _VALUE_ROLE))

    def _listed(self, value: int | None) -> int | None:
        """``value`` (default: the selected label) when the label table has it, else None."""
        value = self.selected_value() if value is None else int(value)
        return value if value is not None and value in self.document.labels else None

    def values(self) -> list[int]:
        return [int(self._row(n).data(COL_VALUE, _VALUE_ROLE)) for n in range(self.tree.topLevelItemCount())]

    def set_active(self, value: int) -> None:
        """Make ``value`` the painting label (selects its row when listed)."""
        value = int(value)
        item = self._item(value)
        if item is not None and self.tree.currentItem() is not item:
            self.tree.setCurrentItem(item)  # -> _on_current_changed
            return
        self._set_brush_label(value)

    def _on_current_changed(self, current, _previous) -> None:
        self._update_enabled()
        if self._filling or current is None:
            return
        self._set_brush_label(int(current.data(COL_VALUE, _VALUE_ROLE)))

    def _set_brush_label(self, value: int) -> None:
        changed = value != self.tools.brush.label
        self.tools.brush.label = value
        self._update_active_text()
        if changed:
            self.active_label_changed.emit(value)

    def _update_active_text(self) -> None:
        v = self.tools.brush.label
        lab = self.document.labels.labels.get(v)
        name = lab.name if lab is not None else f"Label {v} (new)"
        self.active_label.setText(f"Painting with: <b>{v}</b> &nbsp;{name}")

    def _update_enabled(self) -> None:
        has_sel = self.selected_value() is not None
        has_mask = self.document.mask is not None
        for name in ("rename", "colour", "opacity"):
            self.buttons[name].setEnabled(has_sel)
        for name in ("delete", "merge"):
            self.buttons[name].setEnabled(has_sel and has_mask and not self._busy)

    def set_busy(self, busy: bool) -> None:
        """Disable Delete / Merge while a mask operation computes in a worker."""
        self._busy = bool(busy)
        self._update_enabled()

    def _run(self, job, description: str, error_title: str, on_done: Callable[[object], None]) -> bool:
        if self.runner is not None:
            return bool(self.runner(job, description, error_title, on_done))
        with wait_cursor():
            bbox = self.tools.apply_patch(job())
        on_done(bbox)
        return True

    def _on_item_changed(self, item: QtWidgets.QTreeWidgetItem, column: int) -> None:
        if self._filling:
            return
        value = int(item.data(COL_VALUE, _VALUE_ROLE))
        table = self.document.labels
        if value not in table:
            return
        if column == COL_SHOW:
            visible = item.checkState(COL_SHOW) == QtCore.Qt.CheckState.Checked
            if visible != table[value].visible:
                table.set_visible(value, visible)
        elif column == COL_NAME:
            name = item.text(COL_NAME).strip()
            if name != table[value].name:
                self.rename_label(value, name)

    # ----- editing -----------------------------------------------------------------------
    def add_label(self, name: str | None = None, colour: tuple[int, int, int] | None = None) -> Label | None:
        """Add a label with the next free value and make it the active one."""
        try:
            lab = self.document.labels.add(name, colour, max_value=self.document.max_label_value)
        except ValueError as exc:
            self.error.emit("Could not add a label", exc)
            return None
        self.set_active(lab.value)
        return lab

    def rename_label(self, value: int | None = None, name: str | None = None) -> bool:
        value = self._listed(value)
        if value is None:
            return False
        if name is None:
            name, ok = QtWidgets.QInputDialog.getText(self, "Rename label", f"Name of label {value}:",
                                                      text=self.document.labels[value].name)
            if not ok:
                return False
        try:
            self.document.labels.rename(value, name)
        except ValueError as exc:
            self.refresh()
            self.error.emit("Could not rename the label", exc)
            return False
        return True

    def recolour_label(self, value: int | None = None, colour: QtGui.QColor | tuple[int, int, int] | None = None) -> bool:
        value = self._listed(value)
        if value is None:
            return False
        if colour is None:
            colour = QtWidgets.QColorDialog.getColor(QtGui.QColor(*self.document.labels[value].colour), self,
                                                     f"Colour of {self.document.labels[value].name}")
        if isinstance(colour, QtGui.QColor):
            if not colour.isValid():
                return False
            colour = (colour.red(), colour.green(), colour.blue())
        self.document.labels.set_colour(value, colour)
        return True

    def set_label_opacity(self, value: int | None = None, percent: int | None = None) -> bool:
        """Set a label's opacity (0-100 %; asked for when not given): its overlay on the slices,
        and its surface in the 3D view (translucent below 100 %)."""
        value = self._listed(value)
        if value is None:
            return False
        lab = self.document.labels[value]
        if percent is None:
            percent, ok = QtWidgets.QInputDialog.getInt(self, "Label opacity", f"Opacity of {lab.name} (%):",
                                                        round(100 * lab.opacity), 0, 100, 5)
            if not ok:
                return False
        self.document.labels.set_opacity(value, int(percent) / 100.0)
        return True

    def delete_label(self, value: int | None = None) -> bool:
        """Clear the label's voxels and drop it from the table (one undo step; computed in
        a worker when a runner is set: True means started)."""
        value = self.selected_value() if value is None else int(value)
        if value is None or self.document.mask is None or self._busy:
            return False
        try:
            job = self.tools.delete_label_job(value)
        except (ValueError, RuntimeError) as exc:
            self.error.emit("Could not delete the label", exc)
            return False

        def done(_bbox) -> None:
            others = [v for v in self.values() if v != value]
            if value == self.tools.brush.label and others:
                self.set_active(others[0])
        return self._run(job, f"Deleting label {value}", "Could not delete the label", done)

    def ask_merge_target(self, source: int) -> int | None:
        """Blocking question: which label to merge ``source`` into (tests replace this)."""
        choices = [lab for lab in self.document.labels if lab.value != source]
        if not choices:
            return None
        names = [f"{lab.value}: {lab.name}" for lab in choices]
        text, ok = QtWidgets.QInputDialog.getItem(self, "Merge label", f"Merge {self.document.labels[source].name} into:",
                                                  names, 0, False)
        return choices[names.index(text)].value if ok and text in names else None

    def merge_label(self, source: int | None = None, target: int | None = None) -> bool:
        """Relabel ``source`` as ``target`` and drop ``source`` (one undo step)."""
        source = self.selected_value() if source is None else int(source)
        if source is None or self.document.mask is None or source not in self.document.labels or self._busy:
            return False
        if target is None:
            target = self.ask_merge_target(source)
            if target is None:
                return False
        target = int(target)
        try:
            job = self.tools.merge_labels_job(source, target)
        except (ValueError, RuntimeError) as exc:
            self.error.emit("Could not merge the labels", exc)
            return False
        if job is None:  # merging a label into itself: nothing to do
            self.set_active(target)
            return True
        return self._run(job, f"Merging label {source} into {target}", "Could not merge the labels",
                         lambda _bbox: self.set_active(target))

    # ----- files -------------------------------------------------------------------------
    def import_labels(self, path: str | Path | None = None) -> bool:
        """Replace names/colours/visibility by an ITK-SNAP label description file; values
        present in the mask but not in the file keep a default entry."""
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import labels", self.last_dir, LABEL_FILE_FILTER)
            if not path:
                return False
        path = Path(path)
        try:
            table = read_itksnap_labels(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.error.emit("Could not import the labels", exc)
            return False
        self.last_dir = str(path.parent)
        labels = self.document.labels
        labels.replace_all(table.labels)
        if self.document.mask is not None:
            labels.ensure(set(label_voxel_counts(self.document.mask)))
        if self.tools.brush.label not in labels and len(labels):
            self.set_active(next(iter(labels)).value)
        return True

    def export_labels(self, path: str | Path | None = None) -> bool:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export labels", str(Path(self.last_dir) / "labels.txt"),
                                                            LABEL_FILE_FILTER)
            if not path:
                return False
        path = Path(path)
        try:
            write_itksnap_labels(self.document.labels, path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.error.emit("Could not export the labels", exc)
            return False
        self.last_dir = str(path.parent)
        return True


class wait_cursor:
    """Busy cursor for a one-shot op on the GUI thread."""

    def __enter__(self) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)

    def __exit__(self, *exc) -> None:
        QtWidgets.QApplication.restoreOverrideCursor()
