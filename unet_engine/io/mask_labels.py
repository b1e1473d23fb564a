"""Label names and colours saved with a mask, and read back when it is opened.

* ``.seg.nrrd``: 3D Slicer's segment fields in the NRRD header
  (:mod:`unet_engine.io.seg_nrrd`: ``SegmentN_Name``, ``SegmentN_Color``, ``SegmentN_LabelValue``).
* every other mask format (NIfTI, plain NRRD, MetaImage): an ITK-SNAP label description
  file beside the mask, ``<mask name>.label_description.txt``
  (:mod:`unet_engine.io.label_descriptions`). A plain ``.nrrd`` without that file is also
  searched for Slicer segment fields (a renamed ``.seg.nrrd``).
* a DICOM SEG or RTSTRUCT: its segment labels / ROI names and display colours
  (:mod:`unet_engine.io.dicom_seg`, :mod:`unet_engine.io.rtstruct`).

Reading never fails the mask: a damaged or unreadable label file gives
:attr:`MaskLabels.warning` (naming the file, also logged) and no names, so the caller
falls back to its default names. Label values are never remapped: names attach to the
voxel values the file gives them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from unet_engine.errors import SegLoopError
from unet_engine.io.checks import full_suffix
from unet_engine.io.label_descriptions import (LabelDescription, LabelFileError, clean_name, default_colour,
                                            read_label_descriptions, sidecar_path, write_label_descriptions)
from unet_engine.io.seg_nrrd import segments_from_fields

log = logging.getLogger(__name__)

#: what a caller may pass as a mask's labels: ``{value: name}`` or full descriptions
LabelsArg = Mapping[int, str] | Iterable[LabelDescription]


@dataclass(frozen=True)
class MaskLabels:
    """The names/colours found with a mask; empty when the file carries none."""

    entries: tuple[LabelDescription, ...] = ()
    #: the file they came from (the mask itself for .seg.nrrd, else its label file)
    source: Path | None = None
    #: why names that should be there were not used (file named, default names apply)
    warning: str | None = None


def as_descriptions(labels: LabelsArg) -> list[LabelDescription]:
    """``labels`` as descriptions in value order (a name-only mapping gets default colours)."""
    if isinstance(labels, Mapping):
        items = [LabelDescription(int(v), str(n), default_colour(int(v))) for v, n in labels.items()]
    else:
        items = list(labels)
    return sorted((d for d in items if int(d.value) != 0), key=lambda d: d.value)


def has_sidecar(suffix: str) -> bool:
    """Whether masks saved as ``suffix`` keep their names in a label description file."""
    return suffix != ".seg.nrrd"


def write_label_file(mask_path: Path, labels: Iterable[LabelDescription]) -> Path:
    """Write the label description file of the (just saved) mask ``mask_path``; returns it.

    Raises :class:`SegLoopError` saying the mask itself was saved when the file cannot be.
    """
    target = sidecar_path(mask_path)
    try:
        write_label_descriptions(labels, target)
    except OSError as exc:
        raise SegLoopError(f"the mask was saved, but its label names could not be written to {target.name} "
                           f"({exc.strerror or exc}); save again to a folder you can write to", mask_path) from None
    return target


def read_mask_labels(path: str | Path) -> MaskLabels:
    """The label names and colours saved with the mask at ``path`` (see module doc)."""
    path = Path(path).expanduser()
    suffix = full_suffix(path)
    if suffix == ".seg.nrrd":
        return _from_header(path)
    dicom = _from_dicom_object(path)
    if dicom is not None:
        return dicom
    side = sidecar_path(path)
    if side.is_file():
        try:
            entries = read_label_descriptions(side)
        except LabelFileError as exc:
            return _warn(f"{exc}. The label names in it are not used; default names are shown instead.", side)
        return MaskLabels(tuple(_clean(e) for e in entries), side)
    if suffix == ".nrrd":
        return _from_header(path)
    return MaskLabels()


def _from_dicom_object(path: Path) -> MaskLabels | None:
    """Segment / ROI names and colours of a DICOM SEG or RTSTRUCT; None for other files."""
    from unet_engine.io.dicom_seg import dicom_object_kind, read_dicom_seg_labels

    kind = dicom_object_kind(path)
    if kind is None:
        return None
    try:
        if kind == "SEG":
            entries = read_dicom_seg_labels(path)
        else:
            from unet_engine.io.rtstruct import read_rtstruct_labels

            entries = read_rtstruct_labels(path)
    except SegLoopError:
        return MaskLabels()  # the mask read itself reports what is wrong with the file
    return MaskLabels(tuple(_clean(e) for e in entries), path if entries else None)


def _from_header(path: Path) -> MaskLabels:
    from unet_engine.io.itk_io import info_reader  # SimpleITK: loaded when a header is read

    try:
        reader = info_reader(path)
    except SegLoopError:
        return MaskLabels()  # the mask read itself reports what is wrong with the file
    fields = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys() if k.startswith("Segment")}
    entries, problems = segments_from_fields(fields)
    warning = _warn("; ".join(problems), path).warning if problems else None
    return MaskLabels(tuple(_clean(e) for e in entries), path if entries else None, warning)


def _clean(entry: LabelDescription) -> LabelDescription:
    """An entry whose name a label table accepts (one line, no quotes, not empty)."""
    name = clean_name(entry.name).strip() or f"Label {entry.value}"
    if name == entry.name:
        return entry
    return LabelDescription(entry.value, name, entry.colour, entry.opacity, entry.visible, entry.mesh_visible)


def _warn(message: str, path: Path) -> MaskLabels:
    text = f"{path}: {message}" if not message.startswith(str(path)) else message
    log.warning("%s", text)
    return MaskLabels(warning=text)
