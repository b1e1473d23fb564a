"""Display options shared by the three views, the overlay panel and the View menu."""

from __future__ import annotations

from PySide6 import QtCore

_FIELDS = ("overlay_visible", "opacity", "outline", "uncertainty_visible", "crosshair_visible")


class DisplayOptions(QtCore.QObject):
    """One source of truth for how overlays are drawn; ``changed(name)`` after each set."""

    changed = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.overlay_visible = True
        self.opacity = 0.5
        self.outline = False
        self.uncertainty_visible = False
        self.crosshair_visible = True

    def set(self, name: str, value) -> None:
        if name not in _FIELDS:
            raise AttributeError(f"unknown display option {name!r}")
        if name == "opacity":
            value = min(1.0, max(0.0, float(value)))
        else:
            value = bool(value)
        if getattr(self, name) != value:
            setattr(self, name, value)
            self.changed.emit(name)

    def toggle(self, name: str) -> None:
        self.set(name, not getattr(self, name))
