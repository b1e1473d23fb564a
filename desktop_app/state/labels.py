"""Label table: value, name, colour and visibility of each segmentation label (no Qt)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import Signal

#: Colours for labels 1..N when neither the model card nor the user gives one (ITK-SNAP-like).
DEFAULT_COLOURS: list[tuple[int, int, int]] = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (255, 239, 213), (0, 0, 205), (205, 133, 63), (210, 180, 140), (102, 205, 170), (0, 0, 128),
]


def default_colour(value: int) -> tuple[int, int, int]:
    return DEFAULT_COLOURS[(value - 1) % len(DEFAULT_COLOURS)]


@dataclass
class Label:
    value: int
    name: str
    colour: tuple[int, int, int]
    visible: bool = True


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
            table.labels[int(value)] = Label(int(value), name, tuple(colours.get(int(value), default_colour(int(value)))))  # type: ignore[arg-type]
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

    def __iter__(self):
        return iter(self.labels.values())

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, value: int) -> Label:
        return self.labels[value]

    def __contains__(self, value: object) -> bool:
        return value in self.labels

    def lut(self, size: int = 256, opacity: float = 1.0) -> "list[tuple[int, int, int, int]]":
        """RGBA lookup table indexed by label value; hidden labels and 0 are transparent."""
        import numpy as np

        table = np.zeros((size, 4), dtype=np.uint8)
        for lab in self.labels.values():
            if 0 < lab.value < size and lab.visible:
                table[lab.value, :3] = lab.colour
                table[lab.value, 3] = int(round(255 * opacity))
        return table  # type: ignore[return-value]
