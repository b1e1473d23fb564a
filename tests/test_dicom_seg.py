"""DICOM SEG and RTSTRUCT files read as label maps on the DICOM series they were made on
(issue 16, read side): dcmqi's liver SEG on its 3-slice CT, rt-utils' RTSTRUCT on its
2-slice CT, and the bad inputs (another series, broken references, overlap, empty and
fractional segments)."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from unet_engine.errors import GeometryMismatchError, SegLoopError
from unet_engine.io.volume_io import read_mask, read_mask_labels, read_volume, write_mask

DATA = Path(__file__).parent / "data"
CT3 = DATA / "io" / "ct_dicom_3slice" / "series"
LIVER_NRRD = DATA / "io" / "ct_dicom_3slice" / "label_liver_spine.nrrd"
SEG = DATA / "dicom_objects" / "liver_seg.dcm"
RT_DIR = DATA / "dicom_objects" / "ct_rtstruct"
RT_CT = RT_DIR / "series"
RT = RT_DIR / "rt.dcm"

# highdicom copies the CT's one-component PatientName into the SEGs it writes, and says so
pytestmark = pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent:UserWarning")


@pytest.fixture(scope="module")
def ct3():
    return read_volume(CT3)


@pytest.fixture(scope="module")
def rt_ct():
    return read_volume(RT_CT)


# ----- DICOM SEG ---------------------------------------------------------------------------
def test_dcmqi_seg_lands_on_the_slices_its_frames_name(ct3):
    mask = read_mask(SEG, ct3)
    assert mask.shape == ct3.shape and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 1}
    ds = pydicom.dcmread(SEG)
    frames = ds.pixel_array.astype(bool)  # (frames, rows, cols), read by pydicom alone
    seen = set()
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        # the CT file at that z, found by its own header, and the k it has in the volume
        ct_file = [p for p in CT3.iterdir() if abs(float(pydicom.dcmread(p, stop_before_pixels=True)
                                                            .ImagePositionPatient[2]) - z) < 1e-3]
        assert len(ct_file) == 1
        k = int(np.argmin([abs(float(ct3.voxel_to_world((kk, 0, 0))[2]) - z) for kk in range(ct3.shape[0])]))
        seen.add(k)
        assert int((mask[k] == 1).sum()) == int(frames[f].sum()) > 30_000
        assert np.array_equal(mask[k] == 1, frames[f])
    assert seen == {0, 1, 2}
    # the slices differ, so a flipped or shifted slice order would fail above
    assert len({int(frames[f].sum()) for f in range(3)}) == 3


def test_dcmqi_seg_equals_the_label_map_it_was_made_from(ct3):
    """dcmqi made liver_seg.dcm from label_liver_spine.nrrd (liver = 1): same voxels."""
    seg = read_mask(SEG, ct3)
    nrrd = read_mask(LIVER_NRRD, ct3)
    assert np.array_equal(seg == 1, nrrd == 1)
    assert not (seg[nrrd == 2]).any()  # the spine was not in the SEG


def test_seg_label_name_and_colour():
    got = read_mask_labels(SEG)
    assert got.source == SEG and got.warning is None
    assert [(e.value, e.name) for e in got.entries] == [(1, "Liver")]
    # RecommendedDisplayCIELabValue of 3D Slicer's liver colour, RGB (221, 130, 101)
    assert all(abs(a - b) <= 1 for a, b in zip(got.entries[0].colour, (221, 130, 101)))


def test_seg_of_another_series_is_refused(rt_ct):
    with pytest.raises(SegLoopError, match="another series") as err:
        read_mask(SEG, rt_ct)
    assert "liver_seg.dcm" in str(err.value)
    assert "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1" in str(err.value)


def test_seg_frame_drawn_on_an_image_outside_the_series_is_refused(ct3, tmp_path):
    ds = pydicom.dcmread(SEG)
    src = ds.PerFrameFunctionalGroupsSequence[1].DerivationImageSequence[0].SourceImageSequence[0]
    src.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    bad = tmp_path / "foreign_frame.dcm"
    ds.save_as(bad)
    with pytest.raises(SegLoopError, match="not in the open") as err:
        read_mask(bad, ct3)
    assert "foreign_frame.dcm" in str(err.value)


def test_seg_frame_at_the_wrong_position_is_refused(ct3, tmp_path):
    ds = pydicom.dcmread(SEG)
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] = "-120.0"
    bad = tmp_path / "moved_frame.dcm"
    ds.save_as(bad)
    with pytest.raises(GeometryMismatchError, match="frame 1 sits at"):
        read_mask(bad, ct3)


def test_seg_over_a_scan_that_is_not_dicom_is_refused(ct3, tmp_path):
    scan = ct3.with_array(ct3.array)
    scan.source_path = None
    with pytest.raises(SegLoopError, match="open that series"):
        read_mask(SEG, scan)


def _highdicom_seg(tmp_path: Path, ct3, layers: list[np.ndarray], *, fractional: bool = False) -> Path:
    """A SEG written by highdicom on the 3-slice CT; ``layers[n]`` is segment n+1 as (k, j, i)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in sorted(CT3.iterdir())]
    for s in sources:
        if not s.get("SpecificCharacterSet"):  # empty in these CT headers; highdicom wants a value or none
            del s.SpecificCharacterSet
    ks = [int(round(float(ct3.world_to_voxel([float(v) for v in s.ImagePositionPatient])[0]))) for s in sources]
    pixels = np.stack([np.stack([layer[k] for layer in layers], axis=-1) for k in ks])
    pixels = pixels.astype(np.float32) * (0.5 if fractional else 1.0) if fractional else pixels.astype(np.uint8)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n + 1, segment_label=f"part {n + 1}", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n in range(len(layers))]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type=(hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
                           else hd.seg.SegmentationTypeValues.BINARY),
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SegLoop tests",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        omit_empty_frames=True)
    out = tmp_path / "made_by_highdicom.dcm"
    seg.save_as(out)
    return out


def _box(shape, ks, js, is_) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[ks, js, is_] = True
    return m


def test_highdicom_seg_two_segments_round_trip(ct3, tmp_path):
    a = _box(ct3.shape, slice(0, 2), slice(100, 140), slice(200, 260))
    b = _box(ct3.shape, slice(1, 3), slice(300, 310), slice(50, 90))
    path = _highdicom_seg(tmp_path, ct3, [a, b])
    mask = read_mask(path, ct3)
    assert np.array_equal(mask == 1, a) and np.array_equal(mask == 2, b)
    assert [(e.value, e.name) for e in read_mask_labels(path).entries] == [(1, "part 1"), (2, "part 2")]


def test_overlapping_segments_are_refused(ct3, tmp_path):
    a = _box(ct3.shape, slice(0, 2), slice(100, 140), slice(200, 260))
    b = _box(ct3.shape, slice(1, 3), slice(130, 150), slice(250, 270))  # 10 x 10 voxels on slice 1 shared
    path = _highdicom_seg(tmp_path, ct3, [a, b])
    with pytest.raises(SegLoopError, match="overlap on 100 voxels") as err:
        read_mask(path, ct3)
    assert "'part 1' and 'part 2'" in str(err.value) and path.name in str(err.value)


def test_empty_segment_keeps_its_label_and_warns(ct3, tmp_path, caplog):
    a = _box(ct3.shape, slice(0, 1), slice(10, 20), slice(10, 20))
    path = _highdicom_seg(tmp_path, ct3, [a, np.zeros(ct3.shape, dtype=bool)])
    with caplog.at_level(logging.WARNING, logger="unet_engine.io.dicom_seg"):
        mask = read_mask(path, ct3)
    assert np.array_equal(mask == 1, a) and not (mask == 2).any()
    assert "segment 2 'part 2' is empty" in caplog.text
    assert [e.value for e in read_mask_labels(path).entries] == [1, 2]


def test_fractional_seg_is_refused_not_thresholded(ct3, tmp_path):
    a = _box(ct3.shape, slice(0, 2), slice(100, 140), slice(200, 260))
    path = _highdicom_seg(tmp_path, ct3, [a], fractional=True)
    with pytest.raises(SegLoopError, match="FRACTIONAL") as err:
        read_mask(path, ct3)
    assert path.name in str(err.value)


# ----- RTSTRUCT ----------------------------------------------------------------------------
def test_rtstruct_roi_becomes_a_named_label_inside_the_body(rt_ct):
    mask = read_mask(RT, rt_ct)
    assert mask.shape == rt_ct.shape and set(np.unique(mask).tolist()) == {0, 1}
    got = read_mask_labels(RT)
    assert [(e.value, e.name, e.colour) for e in got.entries] == [(1, "ROI-1", (162, 136, 95))]
    # contours are at z = 60 mm only: the first slice
    assert mask[0].any() and not mask[1].any()
    assert abs(float(rt_ct.voxel_to_world((0, 0, 0))[2]) - 60.0) < 1e-6
    # soft tissue under the ROI, not air: inside the body
    assert float(rt_ct.array[mask == 1].min()) > -200
    # an independent count: the outer square x, y in [-51, -27] mm minus the inner contour
    # (a hole, x, y in [-47, -32] mm with two 1 mm chamfered corners), on pixel centres
    x = rt_ct.origin[0] + np.arange(rt_ct.shape[2]) * rt_ct.spacing[2]
    y = rt_ct.origin[1] + np.arange(rt_ct.shape[1]) * rt_ct.spacing[1]
    xx, yy = np.meshgrid(x, y)
    outer = (xx >= -51) & (xx <= -27) & (yy >= -51) & (yy <= -27)
    inner = (xx >= -47) & (xx <= -32) & (yy >= -47) & (yy <= -32)
    ring = outer & ~inner
    assert np.array_equal(mask[0] == 1, (mask[0] == 1) & outer)  # nothing outside the outer contour
    assert (mask[0][ring] == 1).all()  # the whole ring is filled
    assert 0 < int((mask[0][inner] == 1).sum()) <= 8  # the hole is empty but for its chamfered corners


@pytest.mark.parametrize("name", ["invalid_reference_rt.dcm", "non_existent_reference_rt.dcm"])
def test_broken_rtstructs_are_refused_naming_the_file(rt_ct, name):
    with pytest.raises(SegLoopError, match="not in the open series") as err:
        read_mask(RT_DIR / name, rt_ct)
    assert name in str(err.value)
    assert read_mask_labels(RT_DIR / name).entries  # the names are readable; the mask read refuses


def test_rtstruct_of_another_series_is_refused(ct3):
    with pytest.raises(SegLoopError, match="another series") as err:
        read_mask(RT, ct3)
    assert "rt.dcm" in str(err.value)


def test_overlapping_rois_are_refused(rt_ct, tmp_path):
    ds = pydicom.dcmread(RT)
    roi = copy.deepcopy(ds.StructureSetROISequence[0])
    roi.ROINumber, roi.ROIName = 2, "copy of ROI-1"
    ds.StructureSetROISequence.append(roi)
    contour = copy.deepcopy(ds.ROIContourSequence[0])
    contour.ReferencedROINumber = 2
    ds.ROIContourSequence.append(contour)
    bad = tmp_path / "overlap_rt.dcm"
    ds.save_as(bad)
    with pytest.raises(SegLoopError, match="'ROI-1' and 'copy of ROI-1' of this RTSTRUCT overlap"):
        read_mask(bad, rt_ct)


def test_rtstruct_mask_saves_as_nifti_with_its_names(rt_ct, tmp_path):
    """Imported once, the label map is an ordinary mask: it saves and reopens with its name."""
    mask = read_mask(RT, rt_ct)
    out = write_mask(mask, rt_ct, tmp_path / "rt.nii.gz", labels=read_mask_labels(RT).entries)
    assert np.array_equal(read_mask(out, rt_ct), mask)
    assert [e.name for e in read_mask_labels(out).entries] == ["ROI-1"]


def test_series_folder_holding_the_rtstruct_still_opens(rt_ct, tmp_path):
    """rt-utils keeps the RTSTRUCT beside the CT slices: the scan opens, the RTSTRUCT reads."""
    folder = tmp_path / "together"
    shutil.copytree(RT_CT, folder)
    shutil.copy(RT, folder / "rt.dcm")
    scan = read_volume(folder)
    assert scan.same_geometry(rt_ct)
    assert np.array_equal(read_mask(folder / "rt.dcm", scan), read_mask(RT, rt_ct))


def test_gui_mask_loader_reads_an_rtstruct_with_its_names(rt_ct):
    """File > Open mask goes through ``io_jobs.load_mask`` (no Qt needed to call it)."""
    from desktop_app.io_jobs import load_mask

    loaded = load_mask(RT, rt_ct)
    assert np.array_equal(loaded.mask, read_mask(RT, rt_ct))
    assert [e.name for e in loaded.labels.entries] == ["ROI-1"]
