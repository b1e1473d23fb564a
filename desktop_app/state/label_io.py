"""Import/export ITK-SNAP label description files (no Qt).

The format (ITK-SNAP "Label Description File", also read by 3D Slicer and others) is
text, one label per line, ``#`` comments::

    # IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
        0     0    0    0        0  0  0    "Clear Label"
        1   255    0    0        1  1  1    "Label 1"

IDX is the voxel value, R/G/B 0..255, A the opacity 0..1, VIS/MSH visibility in slices /
in the 3D mesh (0 or 1), LABEL the quoted name. Value 0 ("Clear Label") is written
first for ITK-SNAP's sake and ignored on import (SegLoop never lists the background).
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.state.labels import Label, LabelTable
from unet_engine.atomic import atomic_write_bytes
from unet_engine.errors import SegLoopError


class LabelFileError(SegLoopError):
    """A label description file cannot be read."""


HEADER = """################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
"""


def format_itksnap_labels(table: LabelTable, exported_by: str = "SegLoop") -> str:
    """The text of a label description file for ``table``."""
    lines = [f"# This file was exported from {exported_by}", HEADER.rstrip("\n")]
    lines.append(_line(0, (0, 0, 0), 0.0, False, False, "Clear Label"))
    for lab in table:
        lines.append(_line(lab.value, lab.colour, lab.opacity, lab.visible, lab.mesh_visible, lab.name))
    return "\n".join(lines) + "\n"


def parse_itksnap_labels(text: str, source: str | Path | None = None) -> LabelTable:
    """Parse a label description file's text into a :class:`LabelTable`."""
    table = LabelTable()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        q0, q1 = line.find('"'), line.rfind('"')
        if q0 < 0 or q1 <= q0:
            raise LabelFileError(f"line {lineno}: the label name must be in double quotes: {raw!r}", source)
        fields = line[:q0].split()
        name = line[q0 + 1:q1]
        if len(fields) != 7:
            raise LabelFileError(
                f"line {lineno}: expected 7 numbers before the name (IDX R G B A VIS MSH), got {len(fields)}", source
            )
        try:
            value = int(fields[0])
            rgb = tuple(int(float(f)) for f in fields[1:4])
            alpha = float(fields[4])
            vis, msh = (int(float(f)) != 0 for f in fields[5:7])
        except ValueError:
            raise LabelFileError(f"line {lineno}: not a number in {raw!r}", source) from None
        if value < 0 or any(not 0 <= c <= 255 for c in rgb) or not 0.0 <= alpha <= 1.0:
            raise LabelFileError(f"line {lineno}: value, colour (0..255) or opacity (0..1) out of range", source)
        if value == 0:
            continue
        if value in table:
            raise LabelFileError(f"line {lineno}: label {value} is listed twice", source)
        table.labels[value] = Label(value, name, rgb, vis, alpha, msh)  # type: ignore[arg-type]
    table.labels = dict(sorted(table.labels.items()))
    return table


def read_itksnap_labels(path: str | Path) -> LabelTable:
    """Read a label description file (e.g. ``labels.txt`` exported by ITK-SNAP)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LabelFileError(f"cannot read the label file ({exc.strerror})", path) from None
    return parse_itksnap_labels(text, path)


def write_itksnap_labels(table: LabelTable, path: str | Path) -> None:
    """Write ``table`` as a label description file, atomically."""
    atomic_write_bytes(path, format_itksnap_labels(table).encode("utf-8"))


def _line(value: int, rgb: tuple[int, int, int], alpha: float, vis: bool, msh: bool, name: str) -> str:
    a = f"{alpha:.4g}"
    name = name.replace('"', "'")
    return f"{value:5d} {rgb[0]:5d} {rgb[1]:4d} {rgb[2]:4d} {a:>8s} {int(vis):2d} {int(msh):2d}    \"{name}\""
