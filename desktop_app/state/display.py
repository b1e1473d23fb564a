"""How overlays are drawn: one Qt-free model shared by the views, the overlay panel and the
View menu. Each option is a typed property; setting one to a new value emits
``changed(name)``, which the views observe (napari's evented-model pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psygnal import Signal


class _Option:
    """A property of :class:`DisplayOptions` that announces its changes."""

    def __init__(self, default: Any, convert: Callable[[Any], Any]) -> None:
        self.default, self.convert = default, convert
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.__dict__.get(self.name, self.default)

    def __set__(self, obj: Any, value: Any) -> None:
        value = self.convert(value)
        if obj.__dict__.get(self.name, self.default) != value:
            obj.__dict__[self.name] = value
            obj.changed.emit(self.name)


def _unit(value: Any) -> float:
    return min(1.0, max(0.0, float(value)))


class DisplayOptions:
    """One source of truth for how overlays are drawn (no Qt)."""

    changed = Signal(str)  # the option's name

    overlay_visible = _Option(True, bool)
    opacity = _Option(0.5, _unit)  # label overlay opacity, 0..1
    outline = _Option(False, bool)
    uncertainty_visible = _Option(False, bool)
    crosshair_visible = _Option(True, bool)

    NAMES = ("overlay_visible", "opacity", "outline", "uncertainty_visible", "crosshair_visible")
