"""Overlay panel: the label list (colour, name, visibility), overlay opacity, filled or
outline drawing, and the model-uncertainty heat map toggle.

Label edits go straight to the document's :class:`~desktop_app.state.labels.LabelTable`
(rename, recolour, show/hide); the views redraw on its ``changed`` event. Drawing options
go to the shared :class:`~desktop_app.state.display.DisplayOptions`.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.state.document import Document
from desktop_app.state.display import DisplayOptions
from desktop_app.signals import disconnect_all

_VALUE_ROLE = QtCore.Qt.ItemDataRole.UserRole


def _swatch(rgb: tuple[int, int, int]) -> QtGui.QIcon:
    pm = QtGui.QPixmap(14, 14)
    pm.fill(QtGui.QColor(*rgb))
    return QtGui.QIcon(pm)


class OverlayPanel(QtWidgets.QWidget):
    """Labels list + overlay drawing options."""

    def __init__(self, document: Document, options: DisplayOptions, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("overlay_panel")
        self.document = document
        self.options = options
        self._filling = False

        self.label_list = QtWidgets.QListWidget()
        self.label_list.setObjectName("label_list")
        self.label_list.setToolTip("Tick to show a label, double-click to rename")
        self.label_list.itemChanged.connect(self._on_item_changed)
        self.colour_button = QtWidgets.QPushButton("Colour...")
        self.colour_button.clicked.connect(self.choose_colour)

        self.show_overlay = QtWidgets.QCheckBox("Show labels")
        self.opacity = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setObjectName("opacity_slider")
        self.filled = QtWidgets.QRadioButton("Filled")
        self.outline = QtWidgets.QRadioButton("Outline")
        self.show_uncertainty = QtWidgets.QCheckBox("Show model uncertainty")
        self.show_uncertainty.setToolTip("Heat map of the model's per-voxel uncertainty (after inference)")

        self.show_overlay.toggled.connect(lambda v: setattr(self.options, "overlay_visible", v))
        self.opacity.valueChanged.connect(lambda v: setattr(self.options, "opacity", v / 100.0))
        self.outline.toggled.connect(lambda v: setattr(self.options, "outline", v))
        self.show_uncertainty.toggled.connect(lambda v: setattr(self.options, "uncertainty_visible", v))

        mode = QtWidgets.QHBoxLayout()
        mode.addWidget(self.filled)
        mode.addWidget(self.outline)
        form = QtWidgets.QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("Draw", mode)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.label_list, 1)
        lay.addWidget(self.colour_button)
        lay.addWidget(self.show_overlay)
        lay.addLayout(form)
        lay.addWidget(self.show_uncertainty)

        options.changed.connect(self._sync_options)
        document.labels.changed.connect(self.refresh_labels)
        document.image_changed.connect(self.refresh_labels)
        document.uncertainty_changed.connect(self._sync_uncertainty)
        self._sync_options()
        self._sync_uncertainty()
        self.refresh_labels()

    def detach(self) -> None:
        disconnect_all([(self.document.labels.changed, self.refresh_labels),
                        (self.document.image_changed, self.refresh_labels),
                        (self.document.uncertainty_changed, self._sync_uncertainty)])

    # ----- labels ------------------------------------------------------------------------
    def refresh_labels(self) -> None:
        self._filling = True
        try:
            current = self.selected_value()
            self.label_list.clear()
            for lab in self.document.labels:
                item = QtWidgets.QListWidgetItem(_swatch(lab.colour), lab.name)
                item.setData(_VALUE_ROLE, lab.value)
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable | QtCore.Qt.ItemFlag.ItemIsEditable)
                item.setCheckState(QtCore.Qt.CheckState.Checked if lab.visible else QtCore.Qt.CheckState.Unchecked)
                item.setToolTip(f"Label value {lab.value}")
                self.label_list.addItem(item)
                if lab.value == current:
                    self.label_list.setCurrentItem(item)
        finally:
            self._filling = False

    def selected_value(self) -> int | None:
        item = self.label_list.currentItem()
        return None if item is None else int(item.data(_VALUE_ROLE))

    def _on_item_changed(self, item: QtWidgets.QListWidgetItem) -> None:
        if self._filling:
            return
        value = int(item.data(_VALUE_ROLE))
        table = self.document.labels
        if value not in table:
            return
        visible = item.checkState() == QtCore.Qt.CheckState.Checked
        name = item.text().strip()
        if visible != table[value].visible:
            table.set_visible(value, visible)
        elif name and name != table[value].name:
            try:
                table.rename(value, name)
            except ValueError as exc:
                QtWidgets.QToolTip.showText(QtGui.QCursor.pos(), str(exc))
                self.refresh_labels()

    def choose_colour(self, colour: QtGui.QColor | None = None) -> None:
        """Recolour the selected label (asks with a colour dialog unless given)."""
        value = self.selected_value()
        if value is None or value not in self.document.labels:
            return
        if not isinstance(colour, QtGui.QColor):
            colour = QtWidgets.QColorDialog.getColor(QtGui.QColor(*self.document.labels[value].colour), self, "Label colour")
        if colour.isValid():
            self.document.labels.set_colour(value, (colour.red(), colour.green(), colour.blue()))

    # ----- options -----------------------------------------------------------------------
    def _sync_options(self, _name: str = "") -> None:
        o = self.options
        widgets = (self.show_overlay, self.opacity, self.filled, self.outline, self.show_uncertainty)
        for w in widgets:
            w.blockSignals(True)
        self.show_overlay.setChecked(o.overlay_visible)
        self.opacity.setValue(int(round(o.opacity * 100)))
        self.filled.setChecked(not o.outline)
        self.outline.setChecked(o.outline)
        self.show_uncertainty.setChecked(o.uncertainty_visible)
        for w in widgets:
            w.blockSignals(False)

    def _sync_uncertainty(self) -> None:
        has = self.document.uncertainty is not None
        self.show_uncertainty.setEnabled(has)
        self.show_uncertainty.setText("Show model uncertainty" if has else "Show model uncertainty (run the model first)")
