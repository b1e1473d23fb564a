"""Import/export ITK-SNAP label description files for the label table (no Qt).

The file format, its parser and writer live in the engine
(:mod:`unet_engine.io.label_descriptions`, which also writes the file saved beside a NIfTI
mask); this module converts between its rows and the document's :class:`Label` entries.
Value 0 ("Clear Label") is written first for ITK-SNAP's sake and ignored on import
(SegLoop never lists the background).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from desktop_app.state.labels import Label, LabelTable, as_rgb
from unet_engine.io.label_descriptions import (HEADER, LabelDescription, LabelFileError, format_label_descriptions,
                                            parse_label_descriptions, read_label_descriptions,
                                            write_label_descriptions)

__all__ = ["HEADER", "LabelFileError", "descriptions", "format_itksnap_labels", "label_from_description",
           "parse_itksnap_labels", "read_itksnap_labels", "write_itksnap_labels"]


def label_from_description(d: LabelDescription) -> Label:
    """A label-table entry for one description row."""
    return Label(int(d.value), d.name, as_rgb(d.colour), bool(d.visible), float(d.opacity),
                 bool(d.mesh_visible))


def descriptions(labels: Iterable[Label]) -> list[LabelDescription]:
    """Description rows (value order) for label-table entries, e.g. to save with a mask."""
    return [LabelDescription(lab.value, lab.name, as_rgb(lab.colour), lab.opacity, lab.visible,
                             lab.mesh_visible) for lab in sorted(labels, key=lambda lab: lab.value)]


def _table(entries: Iterable[LabelDescription]) -> LabelTable:
    table = LabelTable()
    for d in entries:
        table.labels[int(d.value)] = label_from_description(d)
    return table


def format_itksnap_labels(table: LabelTable, exported_by: str = "SegLoop") -> str:
    """The text of a label description file for ``table``."""
    return format_label_descriptions(descriptions(table), exported_by)


def parse_itksnap_labels(text: str, source: str | Path | None = None) -> LabelTable:
    """Parse a label description file's text into a :class:`LabelTable`."""
    return _table(parse_label_descriptions(text, source))


def read_itksnap_labels(path: str | Path) -> LabelTable:
    """Read a label description file (e.g. ``labels.txt`` exported by ITK-SNAP)."""
    return _table(read_label_descriptions(path))


def write_itksnap_labels(table: LabelTable, path: str | Path) -> None:
    """Write ``table`` as a label description file, atomically."""
    write_label_descriptions(descriptions(table), path)
