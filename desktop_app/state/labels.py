"""Label table: value, name, colour and visibility of each segmentation label (no Qt).

Editing ops that only touch the table (add, rename, recolour, show/hide) live here and
emit ``changed``; ops that also rewrite mask voxels (delete, merge) are undoable and live
in :mod:`desktop_app.state.label_ops`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from psygnal import Signal

if TYPE_CHECKING:
    import numpy as np

#: Colours for labels 1..N when neither the model card nor the user gives one (ITK-SNAP-like).
DEFAULT_COLOURS: list[tuple[int, int, int]] = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (255, 239, 213), (0, 0, 205), (205, 133, 63), (210, 180, 140), (102, 205, 170), (0, 0, 128),
]


def default_colour(value: int) -> tuple[int, int, int]:
    return DEFAULT_COLOURS[(value - 1) % len(DEFAULT_COLOURS)]


def as_rgb(colour: Iterable[int]) -> tuple[int, int, int]:
    """``tuple(colour)`` (a colour given as a list, e.g. from JSON, or a tuple) typed as the
    (r, g, b) triple it is; not checked (:func:`_colour` checks)."""
    return cast("tuple[int, int, int]", tuple(colour))


@dataclass
class Label:
    value: int
    name: str
    colour: tuple[int, int, int]
    visible: bool = True
    #: Per-label opacity 0..1 (ITK-SNAP's ``-A-`` column); multiplies the overlay opacity.
    opacity: float = 1.0
    #: Shown in a 3D mesh view (ITK-SNAP's ``MSH`` column); kept for round-trips.
    mesh_visible: bool = True

#: What :meth:`LabelTable.snapshot` returns: label entries by value (None = absent).
LabelSnapshot = dict[int, "Label | None"]


@dataclass
class LabelTable:
    """Ordered labels keyed by voxel value (0 is background and never listed)."""

    labels: dict[int, Label] = field(default_factory=dict)
    changed = Signal()

    @classmethod
    def from_names(cls, names: dict[int, str], colours: dict[int, tuple[int, int, int]] | None = None) -> "LabelTable":
        colours = colours or {}
        table = cls()
        for value, name in sorted(names.items()):
            if int(value) == 0:
                continue
            table.labels[int(value)] = Label(int(value), name, as_rgb(colours.get(int(value), default_colour(int(value)))))
        return table

    def ensure(self, values: list[int] | set[int]) -> None:
        """Add a default entry for any label value present in a mask but not named yet."""
        added = False
        for v in sorted(int(v) for v in values):
            if v != 0 and v not in self.labels:
                self.labels[v] = Label(v, f"Label {v}", default_colour(v))
                added = True
        if added:
            self.changed.emit()

    # ----- editing (table only) ------------------------------------------------------------
    def next_free_value(self, max_value: int = 255) -> int:
        """Smallest unused label value in ``1..max_value``."""
        for v in range(1, int(max_value) + 1):
            if v not in self.labels:
                return v
        raise ValueError(f"all label values 1..{max_value} are in use")

    def add(
        self,
        name: str | None = None,
        colour: tuple[int, int, int] | None = None,
        value: int | None = None,
        max_value: int = 255,
    ) -> Label:
        """Add a label (next free value unless ``value`` is given) and return it."""
        if value is None:
            value = self.next_free_value(max_value)
        value = int(value)
        if not 0 < value <= max_value:
            raise ValueError(f"label value must be in 1..{max_value}, got {value}")
        if value in self.labels:
            raise ValueError(f"label {value} already exists ({self.labels[value].name!r})")
        lab = Label(value, name or f"Label {value}", _colour(colour) if colour is not None else default_colour(value))
        self.labels[value] = lab
        self._sort()
        self.changed.emit()
        return lab

    def rename(self, value: int, name: str) -> None:
        name = str(name).strip()
        if not name:
            raise ValueError("a label name cannot be empty")
        if '"' in name:
            raise ValueError('a label name cannot contain a double quote (")')
        self.labels[int(value)].name = name
        self.changed.emit()

    def set_colour(self, value: int, colour: tuple[int, int, int]) -> None:
        self.labels[int(value)].colour = _colour(colour)
        self.changed.emit()

    def set_visible(self, value: int, visible: bool) -> None:
        self.labels[int(value)].visible = bool(visible)
        self.changed.emit()

    def set_opacity(self, value: int, opacity: float) -> None:
        self.labels[int(value)].opacity = min(1.0, max(0.0, float(opacity)))
        self.changed.emit()

    def remove(self, value: int) -> None:
        """Drop a table entry (voxels untouched: use ``label_ops.delete_label`` for both)."""
        if self.labels.pop(int(value), None) is not None:
            self.changed.emit()

    def replace_all(self, labels: "list[Label] | dict[int, Label]") -> None:
        """Replace every entry (e.g. after importing a label description file)."""
        items = labels.values() if isinstance(labels, dict) else labels
        new = {int(lab.value): replace(lab) for lab in items if lab.value != 0}
        self.labels.clear()
        self.labels.update(new)
        self._sort()
        self.changed.emit()

    # ----- undo support ----------------------------------------------------------------
    def snapshot(self, values: Iterable[int] | None = None) -> LabelSnapshot:
        """Copies of the entries for ``values`` (all when None); absent values map to None."""
        keys = self.labels.keys() if values is None else values
        return {int(v): (replace(self.labels[v]) if v in self.labels else None) for v in keys}

    def apply_snapshot(self, snap: LabelSnapshot) -> None:
        """Put back the entries of a :meth:`snapshot` (None removes the value)."""
        for v, lab in snap.items():
            if lab is None:
                self.labels.pop(v, None)
            else:
                self.labels[v] = replace(lab)
        self._sort()
        self.changed.emit()

    def _sort(self) -> None:
        """Keep entries in value order, in place (views may hold the dict)."""
        items = sorted(self.labels.items())
        self.labels.clear()
        self.labels.update(items)

    def __iter__(self):
        return iter(self.labels.values())

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, value: int) -> Label:
        return self.labels[value]

    def __contains__(self, value: object) -> bool:
        return value in self.labels

    def lut(self, size: int = 256, opacity: float = 1.0) -> np.ndarray:
        """RGBA lookup table indexed by label value; hidden labels and 0 are transparent."""
        import numpy as np

        table = np.zeros((size, 4), dtype=np.uint8)
        for lab in self.labels.values():
            if 0 < lab.value < size and lab.visible:
                table[lab.value, :3] = lab.colour
                table[lab.value, 3] = int(round(255 * opacity * lab.opacity))
        return table


def _colour(colour: "tuple[int, int, int] | list[int]") -> tuple[int, int, int]:
    c = tuple(int(v) for v in colour)
    if len(c) != 3 or any(not 0 <= v <= 255 for v in c):
        raise ValueError(f"a colour is three integers 0..255, got {colour!r}")
    return c
