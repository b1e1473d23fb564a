"""DICOM SEG written on the DICOM series a scan was opened from (issue 16, write side):
round trip on the 3-slice CT with names and colours, the references to the source
series and slices, gaps in label values, and the refusals (a scan not from DICOM, a
source file as target, an empty mask)."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from unet_engine.io.dicom_seg import read_dicom_seg
from unet_engine.io.dicom_seg_write import MAX_EMPTY_SEGMENTS, write_dicom_seg
from unet_engine.errors import SegLoopError, SourceOverwriteError
from unet_engine.io.volume_io import read_mask, read_mask_labels, read_volume, write_mask

DATA = Path(__file__).parent / "data"
CT3 = DATA / "io" / "ct_dicom_3slice" / "series"
NIFTI = DATA / "io" / "ct_spleen_nifti"

# highdicom copies the CT's one-component PatientName into the SEGs it writes, and says so
pytestmark = pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent:UserWarning")

LABELS = {1: ("Liver", (221, 130, 101)), 2: ("Spine", (241, 214, 145))}


@pytest.fixture(scope="module")
def ct3():
    return read_volume(CT3)


def _two_labels(shape) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[0:2, 100:140, 200:260] = 1
    m[1:3, 300:310, 50:90] = 2
    m[2, 5:8, 500:505] = 2  # near an edge: a flipped row/column order would move it
    return m


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_round_trip_values_names_colours(ct3, tmp_path):
    mask = _two_labels(ct3.shape)
    out = write_mask(mask, ct3, tmp_path / "seg.dcm", labels=LABELS)
    assert out == tmp_path / "seg.dcm"
    back = read_dicom_seg(out, ct3)
    assert back.array.dtype == np.uint8 and np.array_equal(back.array, mask)
    assert back.warnings == []
    assert np.array_equal(read_mask(out, ct3), mask)
    entries = read_mask_labels(out).entries
    assert [(e.value, e.name) for e in entries] == [(1, "Liver"), (2, "Spine")]
    for e in entries:  # through CIELab (16-bit DICOM values) and back
        assert all(abs(a - b) <= 1 for a, b in zip(e.colour, LABELS[e.value][1])), (e.value, e.colour)
    # only the write-side files: no label description file beside a SEG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm"]


def test_header_references_the_source_series_and_slices(ct3, tmp_path):
    mask = _two_labels(ct3.shape)
    out = write_dicom_seg(mask, ct3, tmp_path / "seg.dcm", labels=LABELS).path
    ds = pydicom.dcmread(out)
    sources = {str(s.SOPInstanceUID): s for s in (pydicom.dcmread(p, stop_before_pixels=True)
                                                  for p in sorted(CT3.iterdir()))}
    first = next(iter(sources.values()))
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.SeriesDescription == "SegLoop segmentation" and ds.Manufacturer == "SegLoop"
    assert ds.SeriesInstanceUID != first.SeriesInstanceUID and ds.SOPInstanceUID not in sources
    assert ds.StudyInstanceUID == first.StudyInstanceUID
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    ref = ds.ReferencedSeriesSequence
    assert len(ref) == 1 and ref[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert {str(r.ReferencedSOPInstanceUID) for r in ref[0].ReferencedInstanceSequence} == set(sources)
    assert [(int(s.SegmentNumber), s.SegmentLabel, s.SegmentAlgorithmType) for s in ds.SegmentSequence] == [
        (1, "Liver", "MANUAL"), (2, "Spine", "MANUAL")]
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)).astype(bool)
    # 2 + 2 slices carry a label: 4 frames (empty frames left out)
    assert len(ds.PerFrameFunctionalGroupsSequence) == 4
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        src = sources[str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)]
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(ipp, [float(v) for v in src.ImagePositionPatient], atol=1e-4)
        # the frame's pixels are the mask on the slice the source file is (found from its position)
        k = int(round(float(ct3.world_to_voxel(ipp)[0])))
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        assert np.array_equal(frames[f], mask[k] == number)


def test_label_values_with_gaps_keep_their_values(ct3, tmp_path, caplog):
    mask = np.zeros(ct3.shape, dtype=np.uint8)
    mask[0, 10:20, 10:20] = 1
    mask[1, 30:40, 30:40] = 4
    with caplog.at_level(logging.WARNING, logger="unet_engine.io.dicom_seg_write"):
        written = write_dicom_seg(mask, ct3, tmp_path / "gaps.dcm", labels={1: "a", 4: ("d", (0, 0, 255))})
    assert written.segment_numbers == [1, 2, 3, 4]
    assert "label values 2, 3 are not in the mask" in caplog.text
    assert np.array_equal(read_mask(written.path, ct3), mask)
    assert [(e.value, e.name) for e in read_mask_labels(written.path).entries] == [
        (1, "a"), (2, "Label 2"), (3, "Label 3"), (4, "d")]


def test_too_many_gaps_are_refused_naming_the_values(ct3, tmp_path):
    mask = np.zeros(ct3.shape, dtype=np.uint16)
    mask[0, 0, 0], mask[1, 1, 1] = 1, MAX_EMPTY_SEGMENTS + 3
    with pytest.raises(SegLoopError, match=f"values \\(1, {MAX_EMPTY_SEGMENTS + 3}\\)"):
        write_mask(mask, ct3, tmp_path / "sparse.dcm")
    assert not list(tmp_path.iterdir())


def test_empty_mask_is_refused(ct3, tmp_path):
    with pytest.raises(SegLoopError, match="the mask is empty"):
        write_mask(np.zeros(ct3.shape, np.uint8), ct3, tmp_path / "empty.dcm")
    assert not list(tmp_path.iterdir())


def test_scan_not_from_dicom_is_refused(tmp_path):
    nifti = next(p for p in sorted(NIFTI.iterdir()) if p.name.endswith(".nii.gz"))
    scan = read_volume(nifti)
    mask = np.zeros(scan.shape, dtype=np.uint8)
    mask.flat[0] = 1
    with pytest.raises(SegLoopError, match="DICOM SEG needs a scan opened from a DICOM series; save as .nii.gz or "
                                           r"\.seg\.nrrd") as err:
        write_mask(mask, scan, tmp_path / "out.dcm")
    assert "out.dcm" in str(err.value)
    assert not (tmp_path / "out.dcm").exists()


def test_scan_without_source_is_refused(ct3, tmp_path):
    scan = ct3.with_array(ct3.array)
    scan.source_path = None
    with pytest.raises(SegLoopError, match="DICOM SEG needs a scan opened from a DICOM series"):
        write_mask(_two_labels(ct3.shape), scan, tmp_path / "out.dcm")


def test_never_overwrites_a_source_file(tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(CT3, folder)
    scan = read_volume(folder)
    before = _digests(folder)
    mask = _two_labels(scan.shape)
    with pytest.raises(SourceOverwriteError):
        write_mask(mask, scan, folder / "02.dcm", labels=LABELS)
    with pytest.raises(SourceOverwriteError):  # the writer itself refuses, not only write_mask
        write_dicom_seg(mask, scan, folder / "02.dcm")
    single = read_volume(folder / "01.dcm")  # a scan opened from one DICOM file
    with pytest.raises(SegLoopError):
        write_mask(np.ones(single.shape, np.uint8), single, folder / "01.dcm")
    assert _digests(folder) == before
    assert not [p for p in tmp_path.rglob("*.tmp*")]


def test_write_is_atomic_over_an_older_seg(ct3, tmp_path, monkeypatch):
    """A failure while saving leaves the older SEG as it was, and no temp file."""
    target = tmp_path / "seg.dcm"
    write_mask(_two_labels(ct3.shape), ct3, target, labels=LABELS)
    old = target.read_bytes()
    import highdicom as hd

    def boom(self, *a, **k):
        Path(a[0]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", boom)
    mask = _two_labels(ct3.shape)
    mask[mask == 2] = 1
    with pytest.raises(OSError, match="disk full"):
        write_mask(mask, ct3, target)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm"]


# ----- the GUI's Save mask as ----------------------------------------------------------------
def test_save_as_offers_dicom_seg():
    from desktop_app.io_jobs import MASK_FORMATS, with_mask_suffix

    assert MASK_FORMATS["DICOM SEG (*.dcm)"] == ".dcm"
    assert with_mask_suffix("/x/seg", "DICOM SEG (*.dcm)") == Path("/x/seg.dcm")
    assert with_mask_suffix("/x/seg.dcm", "NIfTI (*.nii.gz)") == Path("/x/seg.dcm")


def test_gui_save_as_dicom_seg_writes_a_seg_on_the_series(qtbot, segloop_app, monkeypatch, tmp_path):
    from PySide6 import QtWidgets

    parts = segloop_app
    folder = tmp_path / "series"
    shutil.copytree(CT3, folder)
    parts.controller.open_scan(folder)
    qtbot.waitUntil(lambda: parts.document.image is not None and not parts.controller.workers.is_busy,
                    timeout=20_000)
    mask = _two_labels(parts.document.image.shape)
    parts.editing.history.apply_full_mask(mask, "Brush stroke")
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: asked.append(a) or (str(tmp_path / "drawn"), "DICOM SEG (*.dcm)"))
    parts.controller.save_mask_as()
    qtbot.waitUntil(lambda: not parts.controller.workers.is_busy and not parts.document.dirty, timeout=20_000)
    out = tmp_path / "drawn.dcm"
    assert len(asked) == 1 and "DICOM SEG (*.dcm)" in asked[0][3]
    assert parts.document.mask_path == out
    assert np.array_equal(read_mask(out, parts.document.image), mask)
    assert pydicom.dcmread(out, stop_before_pixels=True).ReferencedSeriesSequence[0].SeriesInstanceUID == \
        pydicom.dcmread(folder / "01.dcm", stop_before_pixels=True).SeriesInstanceUID
