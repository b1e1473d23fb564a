"""write_mask / read_mask / write_volume contracts: dtype, refusals, atomicity, resampling."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest_io import FIXTURES, copy_fixture, entries, read_nrrd_plain

from unet_engine.io.atomic import atomic_path
from unet_engine.errors import GeometryMismatchError, InvalidVoxelDataError, SegLoopError, UnsupportedImageError
from unet_engine.io.volume_io import read_mask, read_volume, write_mask, write_volume
from unet_engine.volume import Volume


@pytest.fixture()
def scan(tmp_path) -> Volume:
    return read_volume(copy_fixture("mri_breast_nrrd/image.nrrd", tmp_path / "scan.nrrd"))


def test_dtype_follows_the_largest_label(scan, tmp_path):
    m = np.zeros(scan.shape, np.int64)
    m[1, 2, 3] = 255
    assert sitk.ReadImage(str(write_mask(m, scan, tmp_path / "a.nii.gz"))).GetPixelID() == sitk.sitkUInt8
    m[1, 2, 4] = 300
    out = write_mask(m, scan, tmp_path / "b.nrrd")
    assert sitk.ReadImage(str(out)).GetPixelID() == sitk.sitkUInt16
    assert read_mask(out, scan).dtype == np.uint16 and read_mask(out, scan)[1, 2, 4] == 300
    bools = write_mask(m > 0, scan, tmp_path / "c.mha")
    assert np.array_equal(read_mask(bools, scan), (m > 0).astype(np.uint8))
    floats = write_mask((m > 0).astype(np.float32), scan, tmp_path / "d.nii")
    assert nib.load(str(floats)).get_data_dtype() == np.uint8


def _refused(fn, error, match, folder, target):
    before = entries(folder)
    old = target.read_bytes() if target.exists() else None
    with pytest.raises(error, match=match):
        fn()
    assert entries(folder) == before, "stray file left behind"
    assert (target.read_bytes() if target.exists() else None) == old


@pytest.mark.parametrize("values,match", [
    ([0.5], "not whole numbers"), ([np.nan], "NaN"), ([-1], "negative"), ([70000], "up to 70000"),
])
def test_bad_mask_values_are_refused(scan, tmp_path, values, match):
    m = np.zeros(scan.shape, np.float64)
    m.flat[: len(values)] = values
    target = tmp_path / "mask.nii.gz"
    _refused(lambda: write_mask(m, scan, target), InvalidVoxelDataError, match, tmp_path, target)
    write_mask(np.ones(scan.shape, np.uint8), scan, target)  # an existing mask stays untouched too
    _refused(lambda: write_mask(m, scan, target), InvalidVoxelDataError, match, tmp_path, target)


def test_shape_mismatch_is_refused(scan, tmp_path):
    target = tmp_path / "mask.nrrd"
    _refused(lambda: write_mask(np.zeros((2, 3, 4), np.uint8), scan, target), GeometryMismatchError,
             r"shape \(2, 3, 4\) does not match the scan's \(21, 120, 45\)", tmp_path, target)


def test_never_overwrites_the_source_scan(scan, tmp_path):
    src = scan.source_path
    m = np.zeros(scan.shape, np.uint8)
    _refused(lambda: write_mask(m, scan, src), SegLoopError, "overwrite the scan", tmp_path, src)
    _refused(lambda: write_mask(m, scan, tmp_path / "sub" / ".." / "scan.nrrd"), SegLoopError, "overwrite", tmp_path,
             src)
    (tmp_path / "link.nrrd").symlink_to(src)
    _refused(lambda: write_mask(m, scan, tmp_path / "link.nrrd"), SegLoopError, "overwrite", tmp_path, src)
    _refused(lambda: write_volume(scan, src), SegLoopError, "overwrite", tmp_path, src)


def test_never_overwrites_a_slice_of_the_source_dicom_folder(tmp_path):
    folder = copy_fixture("ct_dicom_3slice/series", tmp_path / "series")
    vol = read_volume(folder)
    _refused(lambda: write_mask(np.zeros(vol.shape, np.uint8), vol, folder / "01.dcm"), SegLoopError,
             "cannot save as|overwrite", folder, folder / "01.dcm")


def test_unknown_output_format(scan, tmp_path):
    target = tmp_path / "mask.png"
    _refused(lambda: write_mask(np.zeros(scan.shape, np.uint8), scan, target), UnsupportedImageError,
             "cannot save as '.png'", tmp_path, target)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_interrupted_write_leaves_old_file_and_no_temp(scan, tmp_path, monkeypatch, suffix):
    target = tmp_path / f"mask{suffix}"
    write_mask(np.ones(scan.shape, np.uint8), scan, target)
    old = target.read_bytes()

    def crash(*args, **kwargs):
        path = str(args[1])
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("unet_engine.io.nifti.nib.save", crash)
    monkeypatch.setattr("unet_engine.io.itk_io.sitk.WriteImage", crash)
    before = entries(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        write_mask(np.zeros(scan.shape, np.uint8), scan, target)
    assert entries(tmp_path) == before and target.read_bytes() == old


def test_mhd_pair_is_written_whole(scan, tmp_path):
    m = np.zeros(scan.shape, np.uint8)
    m[3:5, 10:20, 5:9] = 2
    out = write_mask(m, scan, tmp_path / "mask.mhd")
    assert entries(tmp_path) == {"scan.nrrd", "mask.mhd", "mask.zraw"}
    assert "ElementDataFile = mask.zraw" in out.read_text(errors="replace")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), m)


def test_seg_nrrd_has_slicer_segment_fields(scan, tmp_path):
    m = np.zeros(scan.shape, np.uint8)
    m[2:4, 10:20, 5:9] = 1
    m[7, 30:31, 40:44] = 3
    out = write_mask(m, scan, tmp_path / "mask.seg.nrrd", labels={1: "lesion", 3: "nipple", 5: "unused"})
    fields, data = read_nrrd_plain(out)
    assert np.array_equal(data, m)
    assert fields["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert fields["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    segs = {fields[f"Segment{n}_LabelValue"]: n for n in range(3)}
    assert set(segs) == {"1", "3", "5"}
    s1, s3 = segs["1"], segs["3"]
    assert fields[f"Segment{s1}_Name"] == "lesion" and fields[f"Segment{s1}_Layer"] == "0"
    assert fields[f"Segment{s1}_Extent"] == "5 8 10 19 2 3"  # i, j, k ranges
    assert fields[f"Segment{s3}_Extent"] == "40 43 30 30 7 7"
    assert len(fields[f"Segment{s3}_Color"].split()) == 3


def test_read_mask_reports_geometry_differences(scan, tmp_path):
    m = np.zeros(scan.shape, np.uint8)
    m[5:8, 20:30, 10:20] = 1
    img = sitk.GetImageFromArray(m)
    img.SetSpacing((1.0, 1.0, 1.0))
    img.SetOrigin((5.0, 6.0, 7.0))
    sitk.WriteImage(img, str(tmp_path / "other.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="spacing .* origin .*resample=True") as info:
        read_mask(tmp_path / "other.nii.gz", scan)
    assert "other.nii.gz" in str(info.value) and "scan.nrrd" in str(info.value)
    sitk.WriteImage(sitk.GetImageFromArray(m[:, :, :-1]), str(tmp_path / "small.nrrd"))
    with pytest.raises(GeometryMismatchError, match="shape"):
        read_mask(tmp_path / "small.nrrd", scan)


def test_read_mask_resamples_with_nearest_neighbour(scan, tmp_path):
    """The same mask stored on a grid shifted by 2 voxels along i and at half resolution
    along j lands back on the scan's voxels."""
    m = np.zeros(scan.shape, np.uint8)
    m[5:8, 20:30, 10:20] = 1
    m[12, 60:64, 30:33] = 2
    shifted = Volume(array=m[:, ::2, 2:], spacing=(scan.spacing[0], scan.spacing[1] * 2, scan.spacing[2]),
                     origin=tuple(scan.voxel_to_world((0, 0, 2))), direction=scan.direction)
    write_mask(shifted.array, shifted, tmp_path / "coarse.nrrd")
    with pytest.raises(GeometryMismatchError):
        read_mask(tmp_path / "coarse.nrrd", scan)
    back = read_mask(tmp_path / "coarse.nrrd", scan, resample=True)
    assert back.shape == scan.shape and back.dtype == np.uint8
    assert np.array_equal(back[:, ::2, 2:], m[:, ::2, 2:])  # voxel centres shared by both grids
    assert not back[:, :, :2].any()  # outside the label file's grid: background


def test_read_mask_refuses_images_and_colour(scan, tmp_path):
    cord = FIXTURES / "mri_spinalcord_nifti" / "image.nii.gz"
    with pytest.raises(InvalidVoxelDataError, match="not whole numbers.*probability map or an image"):
        read_mask(cord, read_volume(cord))
    spleen = FIXTURES / "ct_spleen_nifti" / "image.nii.gz"  # float32 holding whole HU values
    with pytest.raises(InvalidVoxelDataError, match="negative values"):
        read_mask(spleen, read_volume(spleen))
    rgb = sitk.GetImageFromArray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "c.png"))
    photo = read_volume(tmp_path / "c.png")
    with pytest.raises(InvalidVoxelDataError, match="3 values"):
        read_mask(tmp_path / "c.png", photo)


def test_works_through_an_outer_atomic_path_like_the_dataset_module(scan, tmp_path):
    m = np.zeros(scan.shape, np.uint8)
    m[1, 1, 1] = 1
    clean = Volume(array=scan.array, spacing=scan.spacing, origin=scan.origin, direction=scan.direction)
    with atomic_path(tmp_path / "imagesTr" / "case.nii.gz") as tmp:
        write_volume(clean, tmp)
    with atomic_path(tmp_path / "labelsTr" / "case.nii.gz") as tmp:
        write_mask(m, clean, tmp)
    assert entries(tmp_path / "labelsTr") == {"case.nii.gz"} == entries(tmp_path / "imagesTr")
    assert np.array_equal(read_mask(tmp_path / "labelsTr" / "case.nii.gz", scan), m)
    assert read_volume(tmp_path / "imagesTr" / "case.nii.gz").same_geometry(scan)


def test_writing_nii_gz_beside_a_nii_warns(scan, tmp_path, caplog):
    write_mask(np.zeros(scan.shape, np.uint8), scan, tmp_path / "m.nii")
    write_mask(np.ones(scan.shape, np.uint8), scan, tmp_path / "m.nii.gz")
    assert "m.nii sits beside it" in caplog.text
    assert read_mask(tmp_path / "m.nii.gz", scan).all()  # SegLoop itself reads the right voxels
