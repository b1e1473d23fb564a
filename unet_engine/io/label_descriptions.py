"""ITK-SNAP label description files: the name, colour and visibility of each label value.

The format is the one ITK-SNAP writes with "Export label descriptions" (and reads with
"Import label descriptions" or ``itksnap -l FILE``); 3D Slicer and many atlases use it too.
Text, one label per line, ``#`` comments::

    # IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
        0     0    0    0        0  0  0    "Clear Label"
        1   255    0    0        1  1  1    "spleen"

IDX is the voxel value, R/G/B 0..255, A the opacity 0..1, VIS/MSH visibility in slices /
in the 3D mesh (0 or 1), LABEL the name in double quotes (it may hold spaces). Value 0
("Clear Label") is written first, as ITK-SNAP does, and skipped on reading (it is the
background). The reader is lenient where ITK-SNAP is strict: A, VIS and MSH may be
missing (defaults 1, 1, 1), comment lines may be indented, a UTF-8 byte-order mark is
ignored. Anything else that is off raises :class:`LabelFileError` naming the file and line.

Masks saved by SegLoop in a format without a place for names (NIfTI, plain NRRD,
MetaImage) get such a file beside them, named by :func:`sidecar_path`:
``liver_mask.nii.gz`` -> ``liver_mask.label_description.txt``. Neither ITK-SNAP nor
Slicer looks for it on their own: load it with ``itksnap -s liver_mask.nii.gz -l
liver_mask.label_description.txt``, or ITK-SNAP's Segmentation > Import Label Descriptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from unet_engine.io.atomic import atomic_write_bytes
from unet_engine.errors import SegLoopError
from unet_engine.io.checks import full_suffix
from unet_engine.volume import int3

#: ``<mask name without its format suffix>`` + this = the mask's label description file
SIDECAR_SUFFIX = ".label_description.txt"

#: display colours (RGB 0..1) cycled over label values nobody named a colour for
PALETTE = ((0.50, 0.68, 0.50), (0.95, 0.84, 0.57), (0.69, 0.48, 0.39), (0.44, 0.72, 0.82), (0.85, 0.40, 0.40),
           (0.56, 0.44, 0.72), (0.96, 0.65, 0.26), (0.35, 0.60, 0.85), (0.90, 0.60, 0.75), (0.60, 0.80, 0.30))

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


class LabelFileError(SegLoopError):
    """A label description file cannot be read."""


@dataclass(frozen=True)
class LabelDescription:
    """One row of a label description file."""

    value: int
    name: str
    colour: tuple[int, int, int]
    opacity: float = 1.0
    visible: bool = True
    mesh_visible: bool = True


def default_colour(value: int) -> tuple[int, int, int]:
    """The colour (0..255) the engine gives label ``value`` when nobody chose one."""
    r, g, b = PALETTE[(int(value) - 1) % len(PALETTE)]
    return round(r * 255), round(g * 255), round(b * 255)


#: characters that end a line for :meth:`str.splitlines` (a name must not hold one)
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def clean_name(name: str) -> str:
    """``name`` fit for one quoted field of one line: line breaks become spaces, ``"`` becomes ``'``."""
    return str(name).translate({ord(c): " " for c in _LINE_BREAKS}).replace('"', "'")


def sidecar_path(mask_path: str | Path) -> Path:
    """Where the label description file of the mask ``mask_path`` lives (see module doc)."""
    path = Path(mask_path)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(stem + SIDECAR_SUFFIX)


# ----- writing -----------------------------------------------------------------------------
def format_label_descriptions(entries: Iterable[LabelDescription], exported_by: str = "SegLoop") -> str:
    """The text of a label description file listing ``entries`` (value 0 is added first)."""
    lines = [f"# This file was exported from {exported_by}", HEADER.rstrip("\n"),
             _line(LabelDescription(0, "Clear Label", (0, 0, 0), 0.0, False, False))]
    lines += [_line(e) for e in sorted(entries, key=lambda e: e.value) if e.value != 0]
    return "\n".join(lines) + "\n"


def write_label_descriptions(entries: Iterable[LabelDescription], path: str | Path) -> None:
    """Write a label description file atomically (ordinary permissions, as any program's)."""
    atomic_write_bytes(path, format_label_descriptions(entries).encode("utf-8"))


def _line(e: LabelDescription) -> str:
    r, g, b = e.colour
    a = f"{e.opacity:.4g}"
    return f"{e.value:5d} {r:5d} {g:4d} {b:4d} {a:>8s} {int(e.visible):2d} {int(e.mesh_visible):2d}    " \
           f"\"{clean_name(e.name)}\""


# ----- reading -----------------------------------------------------------------------------
def read_label_descriptions(path: str | Path) -> list[LabelDescription]:
    """The labels (value order, background left out) of a label description file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise LabelFileError(f"cannot read the label file ({exc.strerror or exc})", path) from None
    return parse_label_descriptions(text, path)


def parse_label_descriptions(text: str, source: str | Path | None = None) -> list[LabelDescription]:
    """Parse the text of a label description file (``source`` names it in errors)."""
    found: dict[int, LabelDescription] = {}
    for lineno, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line, raw, lineno, source)
        if entry.value in found:
            raise LabelFileError(f"line {lineno}: label {entry.value} is listed twice", source)
        found[entry.value] = entry
    return [found[v] for v in sorted(found) if v != 0]


def _parse_line(line: str, raw: str, lineno: int, source: str | Path | None) -> LabelDescription:
    q0, q1 = line.find('"'), line.rfind('"')
    if q0 < 0 or q1 <= q0:
        raise LabelFileError(f"line {lineno}: the label name must be in double quotes: {raw!r}", source)
    fields, name = line[:q0].split(), line[q0 + 1:q1]
    if not 4 <= len(fields) <= 7:
        raise LabelFileError(f"line {lineno}: expected IDX R G B [A VIS MSH] before the name, got {len(fields)} "
                             f"numbers: {raw!r}", source)
    try:
        value = int(fields[0])
        rgb = int3(_whole(f) for f in fields[1:4])
        alpha = float(fields[4]) if len(fields) > 4 else 1.0
        vis, msh = (_whole(fields[n]) != 0 if len(fields) > n else True for n in (5, 6))
    except ValueError:
        raise LabelFileError(f"line {lineno}: not a number in {raw!r}", source) from None
    if value < 0:
        raise LabelFileError(f"line {lineno}: a label value cannot be negative ({value})", source)
    if any(not 0 <= c <= 255 for c in rgb):
        raise LabelFileError(f"line {lineno}: a colour component is out of 0..255 in {raw!r}", source)
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise LabelFileError(f"line {lineno}: the opacity must be 0..1, got {fields[4]}", source)
    return LabelDescription(value, name, rgb, alpha, vis, msh)


def _whole(text: str) -> int:
    """An integer written as ``7`` or ``7.0`` (ValueError otherwise)."""
    number = float(text)
    if not number.is_integer():
        raise ValueError(text)
    return int(number)
