"""Label editor ops and ITK-SNAP label description files (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.label_io import (
    LabelFileError,
    format_itksnap_labels,
    parse_itksnap_labels,
    read_itksnap_labels,
    write_itksnap_labels,
)
from desktop_app.state.label_ops import clear_label_voxels, delete_label, label_voxel_counts, merge_labels
from desktop_app.state.labels import LabelTable
from unet_engine.volume import Volume

ITKSNAP_SAMPLE = """################################################
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
#    IDX:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "Anterior hippocampus"
    2     0  255    0      0.5  1  0    "Posterior hippocampus"
   17   102  205  170        1  0  1    "Label with \t odd  spacing"
"""


def make():
    doc = Document()
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[1, 2:5, 2:5] = 1
    mask[2, 5:8, 5:8] = 2
    doc.set_image(Volume(np.zeros((4, 10, 10), np.int16)), mask=mask)
    doc.labels.rename(1, "Anterior")
    doc.labels.rename(2, "Posterior")
    return doc, History(doc)


def test_table_edits_emit_changed():
    table = LabelTable()
    seen = []
    table.changed.connect(lambda: seen.append(1))
    lab = table.add("Liver")
    assert lab.value == 1 and lab.colour == (255, 0, 0)
    table.add("Kidney", colour=(1, 2, 3), value=7)
    assert table.next_free_value() == 2
    table.rename(7, "Left kidney")
    table.set_colour(7, (9, 9, 9))
    table.set_visible(1, False)
    table.set_opacity(7, 0.25)
    assert [lab.value for lab in table] == [1, 7] and table[7].name == "Left kidney" and table[7].colour == (9, 9, 9)
    lut = np.asarray(table.lut())
    assert lut[1, 3] == 0 and tuple(lut[7]) == (9, 9, 9, 64)
    table.remove(1)
    assert 1 not in table and len(seen) == 7
    with pytest.raises(ValueError):
        table.add(value=7)
    with pytest.raises(ValueError):
        table.add(value=256)
    with pytest.raises(ValueError):
        table.rename(7, "  ")
    with pytest.raises(ValueError):
        table.set_colour(7, (300, 0, 0))


def test_delete_label_one_undo_step_restores_voxels_and_entry():
    doc, hist = make()
    before = doc.mask.copy()
    bbox = delete_label(doc, hist, 1)
    assert bbox == ((1, 2), (2, 5), (2, 5))
    assert not (doc.mask == 1).any() and 1 not in doc.labels and (doc.mask == 2).sum() == 9
    assert hist.undo_count == 1 and hist.undo_text == "Undo Delete label Anterior"
    hist.undo()
    assert np.array_equal(doc.mask, before) and doc.labels[1].name == "Anterior"
    hist.redo()
    assert 1 not in doc.labels and not (doc.mask == 1).any()


def test_delete_label_without_voxels_is_still_undoable():
    doc, hist = make()
    doc.labels.add("Empty", value=9)
    assert delete_label(doc, hist, 9) is None
    assert 9 not in doc.labels and hist.undo_count == 1
    hist.undo()
    assert doc.labels[9].name == "Empty"


def test_merge_labels():
    doc, hist = make()
    before = doc.mask.copy()
    merge_labels(doc, hist, 1, 2)
    assert (doc.mask == 2).sum() == 18 and 1 not in doc.labels
    assert hist.undo_text == "Undo Merge Anterior into Posterior"
    hist.undo()
    assert np.array_equal(doc.mask, before) and doc.labels[1].name == "Anterior"
    # merging into a value not in the table creates its entry (and undo removes it)
    merge_labels(doc, hist, 2, 5)
    assert 5 in doc.labels and 2 not in doc.labels
    hist.undo()
    assert 5 not in doc.labels and doc.labels[2].name == "Posterior"
    assert merge_labels(doc, hist, 2, 2) is None


def test_clear_label_voxels_keeps_entry_and_counts():
    doc, hist = make()
    assert label_voxel_counts(doc.mask) == {1: 9, 2: 9}
    clear_label_voxels(doc, hist, 2)
    assert label_voxel_counts(doc.mask) == {1: 9} and 2 in doc.labels


def test_parse_itksnap_sample():
    table = parse_itksnap_labels(ITKSNAP_SAMPLE)
    assert [lab.value for lab in table] == [1, 2, 17]
    assert table[1].name == "Anterior hippocampus" and table[1].colour == (255, 0, 0)
    assert table[2].opacity == 0.5 and table[2].visible and not table[2].mesh_visible
    assert not table[17].visible and table[17].name == "Label with \t odd  spacing"


def test_itksnap_round_trip(tmp_path):
    table = parse_itksnap_labels(ITKSNAP_SAMPLE)
    table.add("Tumour (core)", colour=(12, 34, 56), value=200)
    path = tmp_path / "labels.txt"
    write_itksnap_labels(table, path)
    text = path.read_text()
    assert "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL" in text
    assert '    0     0    0    0        0  0  0    "Clear Label"' in text
    assert '    1   255    0    0        1  1  1    "Anterior hippocampus"' in text
    back = read_itksnap_labels(path)
    assert [vars(lab) for lab in back] == [vars(lab) for lab in table]
    assert format_itksnap_labels(back) == text


def test_import_replaces_document_table():
    doc, _ = make()
    doc.labels.replace_all(parse_itksnap_labels(ITKSNAP_SAMPLE).labels)
    assert doc.labels[1].name == "Anterior hippocampus" and 17 in doc.labels


@pytest.mark.parametrize(
    "line",
    [
        '    1   255    0        "too few"',
        '    1   255    0    0        1  1  1    no quotes',
        '    1   256    0    0        1  1  1    "bad colour"',
        '    x   255    0    0        1  1  1    "bad index"',
        '    1   255    0    0      1.5  1  1    "bad alpha"',
    ],
)
def test_bad_label_files(tmp_path, line):
    p = tmp_path / "bad.txt"
    p.write_text("# header\n" + line + "\n")
    with pytest.raises(LabelFileError, match="bad.txt: line 2"):
        read_itksnap_labels(p)


def test_duplicate_and_missing_label_file(tmp_path):
    with pytest.raises(LabelFileError, match="twice"):
        parse_itksnap_labels('1 1 1 1 1 1 1 "a"\n1 2 2 2 1 1 1 "b"\n')
    with pytest.raises(LabelFileError, match="cannot read"):
        read_itksnap_labels(tmp_path / "missing.txt")


def test_saved_names_win_over_the_table_they_replace():
    from pathlib import Path

    from desktop_app.state.labels import Label
    from desktop_app.state.saved_labels import LabelConflict, labels_with_saved, saved_labels_note
    from unet_engine.io.label_descriptions import LabelDescription
    from unet_engine.io.mask_labels import MaskLabels

    project = [Label(1, "Liver", (255, 0, 0)), Label(2, "Tumour", (0, 255, 0)), Label(3, "Label 3", (0, 0, 255))]
    saved = [LabelDescription(1, "spleen", (1, 2, 3), 0.5, False, True), LabelDescription(2, "tumour", (9, 9, 9)),
             LabelDescription(3, "cyst", (4, 5, 6)), LabelDescription(7, "new", (7, 7, 7))]
    entries, conflicts = labels_with_saved(project, saved)
    assert [(e.value, e.name, e.colour) for e in entries] == [(1, "spleen", (1, 2, 3)), (2, "tumour", (9, 9, 9)),
                                                              (3, "cyst", (4, 5, 6)), (7, "new", (7, 7, 7))]
    assert entries[0].opacity == 0.5 and not entries[0].visible
    # only a real rename is a conflict: not a change of case, not a default "Label N"
    assert conflicts == [LabelConflict(1, "spleen", "Liver")]
    assert project[0].name == "Liver"  # the defaults themselves are not modified
    kept, none = labels_with_saved(project, [])
    assert [(e.value, e.name) for e in kept] == [(1, "Liver"), (2, "Tumour"), (3, "Label 3")] and none == []
    note = saved_labels_note(MaskLabels(tuple(saved), source=Path("m.label_description.txt")), conflicts)
    assert note == "Label names from m.label_description.txt: label 1 is 'spleen' (was 'Liver')"
    assert saved_labels_note(MaskLabels(), []) == ""
    assert saved_labels_note(MaskLabels(warning="m.txt: line 2: bad"), []) == "Label names not read: m.txt: line 2: bad"
