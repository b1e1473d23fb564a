"""The label names a mask file was saved with, merged into the label table (no Qt).

When a mask is opened, the names and colours saved with it (a ``.seg.nrrd``'s segments,
or the ITK-SNAP label file beside a NIfTI: :mod:`unet_engine.io.mask_labels`) win for the
values the file names, over the project's / model's names the table starts from: the
reader of a mask expects the structure it was saved as ("spleen"), not whatever another
model calls that voxel value, and the table only names values, so showing another name
would silently relabel the structure. Entries for values the file does not name are kept,
so the project's labels stay available for painting. Where the two disagree the caller
tells the user (:func:`saved_labels_note`): the value is the same, the meaning may not be.
Voxel values are never changed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from desktop_app.state.label_io import label_from_description
from desktop_app.state.labels import Label
from unet_engine.io.label_descriptions import LabelDescription
from unet_engine.io.mask_labels import MaskLabels


@dataclass(frozen=True)
class LabelConflict:
    """One value named differently in the mask file and in the table it replaced."""

    value: int
    saved: str
    replaced: str


def labels_with_saved(current: Iterable[Label], saved: Iterable[LabelDescription]
                      ) -> tuple[list[Label], list[LabelConflict]]:
    """Table entries for an opened mask: ``saved`` (the file's) over ``current``.

    Returns ``(entries in value order, conflicts)``; a conflict is a value the file names
    differently (ignoring case) from a non-default name in ``current``.
    """
    merged = {int(lab.value): replace(lab) for lab in current}
    conflicts: list[LabelConflict] = []
    for d in saved:
        value = int(d.value)
        if value == 0:
            continue
        old = merged.get(value)
        if old is not None and old.name.casefold() != d.name.casefold() and old.name != f"Label {value}":
            conflicts.append(LabelConflict(value, d.name, old.name))
        merged[value] = label_from_description(d)
    return [merged[v] for v in sorted(merged)], conflicts


def saved_labels_note(found: MaskLabels, conflicts: Iterable[LabelConflict]) -> str:
    """A status-bar line about the names that came with a mask ('' when there is nothing to say)."""
    if found.warning:
        return f"Label names {'partly read' if found.entries else 'not read'}: {found.warning}"
    clashes = list(conflicts)
    if not clashes:
        return ""
    where = found.source.name if found.source is not None else "the mask"
    shown = "; ".join(f"label {c.value} is {c.saved!r} (was {c.replaced!r})" for c in clashes[:3])
    more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
    return f"Label names from {where}: {shown}{more}"
