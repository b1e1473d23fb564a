"""Every real case in tests/data/io: geometry read exactly, masks round-trip voxel-for-voxel
and in world millimetres, checked with SimpleITK and nibabel directly (not through SegLoop)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest_io import (CASES, FIXTURES, TOL_MM, box_mask, itk_world, nib_world, nrrd_world, read_nrrd_plain,
                         reference_image, reference_world)

from unet_engine.errors import ImageDimensionError
from unet_engine.io.volume_io import read_mask, read_volume, write_mask, write_volume
from unet_engine.volume import Volume

EXPECTED = {  # name: (shape kji, spacing kji, orientation, dtype kind, modality)
    "ct_spleen_nifti": ((20, 132, 148), (5.0, 0.794922, 0.794922), "RAS", "f", "unknown"),
    "mri_spinalcord_nifti": ((16, 141, 131), (1.0, 1.0, 1.0), "RAS", "f", "unknown"),
    "mri_brain_nrrd": ((25, 128, 128), (6.5, 0.78125, 0.78125), "LAS", "i", "unknown"),
    "mri_breast_nrrd": ((21, 120, 45), (2.1, 0.664062, 0.664062), "LPS", "i", "unknown"),
    "ct_dicom_3slice": ((3, 512, 512), (1.0, 0.810547, 0.810547), "LPS", "i", "CT"),
    "mr_hippocampus_dicom": ((32, 51, 35), (1.0, 1.0, 1.0), "LPS", "i", "MR"),
}


@pytest.fixture(scope="module")
def volumes() -> dict[str, Volume]:
    return {name: read_volume(FIXTURES / img) for name, (img, _) in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_reads_expected_grid(name, volumes):
    vol = volumes[name]
    shape, spacing, code, kind, modality = EXPECTED[name]
    assert vol.shape == shape
    assert np.allclose(vol.spacing, spacing, atol=1e-5)
    assert vol.orientation_code() == code
    assert vol.array.dtype.kind == kind
    assert vol.modality == modality
    assert vol.array.flags.c_contiguous and vol.array.flags.writeable
    assert vol.source_path == FIXTURES / CASES[name][0]


@pytest.mark.parametrize("name", list(CASES))
def test_geometry_and_voxels_match_reference_reader(name, volumes):
    """Voxels equal SimpleITK's; voxel centres sit where nibabel (NIfTI) or SimpleITK put them."""
    vol = volumes[name]
    rel = CASES[name][0]
    ref = reference_image(rel)
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(ref).astype(vol.array.dtype))
    corners = np.array([[k, j, i] for k in (0, vol.shape[0] - 1) for j in (0, vol.shape[1] - 1)
                        for i in (0, vol.shape[2] - 1)])
    assert np.abs(vol.voxel_to_world(corners) - reference_world(rel, corners)).max() < TOL_MM
    assert np.abs(vol.voxel_to_world(corners) - itk_world(ref, corners)).max() < TOL_MM


def _mask_for(name: str, vol: Volume) -> np.ndarray:
    label = CASES[name][1]
    mask = box_mask(vol.shape)
    if label is not None:  # the provided label, plus an asymmetric marker the flips would move
        provided = read_mask(FIXTURES / label, vol)
        mask = np.where(provided > 0, provided, np.where(mask > 0, mask + 4, 0)).astype(np.uint8)
    return mask


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
@pytest.mark.parametrize("name", list(CASES))
def test_mask_round_trip_in_other_tools(name, suffix, volumes, tmp_path):
    vol = volumes[name]
    mask = _mask_for(name, vol)
    out = write_mask(mask, vol, tmp_path / f"mask{suffix}")
    assert out.exists() and {p.name for p in tmp_path.iterdir()} == {out.name}
    kji = np.argwhere(mask > 0)
    expected_world = reference_world(CASES[name][0], kji)  # where the scan's own reader puts these voxels
    assert np.abs(vol.voxel_to_world(kji) - expected_world).max() < TOL_MM

    img = sitk.ReadImage(str(out))  # SimpleITK, directly
    assert np.array_equal(sitk.GetArrayFromImage(img), mask)
    assert sitk.GetArrayViewFromImage(img).dtype == np.uint8
    assert np.abs(itk_world(img, kji) - expected_world).max() < TOL_MM
    if suffix == ".nii.gz":  # nibabel, directly
        nimg = nib.load(str(out))
        assert np.array_equal(np.asanyarray(nimg.dataobj).T, mask)
        assert np.abs(nib_world(nimg.affine, kji) - expected_world).max() < TOL_MM
    else:  # the NRRD header as text, independent of ITK
        fields, data = read_nrrd_plain(out)
        assert np.array_equal(data, mask)
        assert np.abs(nrrd_world(fields, kji) - expected_world).max() < TOL_MM
    assert np.array_equal(read_mask(out, vol), mask)  # and SegLoop reads it back on the scan's grid


def test_provided_labels_line_up_with_their_scans(volumes):
    """Labels land on the anatomy: spleen/liver at soft-tissue HU, spine at bone HU."""
    spleen = volumes["ct_spleen_nifti"]
    lab = read_mask(FIXTURES / CASES["ct_spleen_nifti"][1], spleen)
    assert lab.sum() == 96672
    assert 20 < spleen.array[lab == 1].mean() < 200  # spleen ~ 40-60 HU
    assert spleen.array[lab == 0].mean() < spleen.array[lab == 1].mean() - 100
    ct = volumes["ct_dicom_3slice"]
    lab = read_mask(FIXTURES / CASES["ct_dicom_3slice"][1], ct)
    assert 20 < ct.array[lab == 1].mean() < 200  # liver
    assert ct.array[lab == 2].mean() > 150  # spine: bone
    for name in ("mri_spinalcord_nifti", "mri_brain_nrrd", "mri_breast_nrrd"):
        vol = volumes[name]
        lab = read_mask(FIXTURES / CASES[name][1], vol)
        assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1}
        kji = np.argwhere(lab > 0)
        assert len(kji) > 10 and (kji.min(0) >= 0).all() and (kji.max(0) < vol.shape).all()
    cord = volumes["mri_spinalcord_nifti"]  # float32 0/1 label accepted
    assert nib.load(str(FIXTURES / CASES["mri_spinalcord_nifti"][1])).get_data_dtype() == np.float32
    assert read_mask(FIXTURES / CASES["mri_spinalcord_nifti"][1], cord).sum() > 100


@pytest.mark.parametrize("code", ["LPS", "LAS", "PIR", "RAS"])
def test_reoriented_copies_put_labels_at_the_same_world_positions(code, volumes, tmp_path):
    """The spleen label stored in another axis order/direction: same mm positions."""
    src = nib.load(str(FIXTURES / CASES["ct_spleen_nifti"][1]))
    target = nib.orientations.axcodes2ornt(tuple(code))
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(src.affine), target)
    reoriented = src.as_reoriented(ornt)
    path = tmp_path / f"label_{code}.nii.gz"
    nib.save(reoriented, str(path))
    vol = read_volume(path)
    assert vol.orientation_code() == code
    base = volumes["ct_spleen_nifti"]
    # every labelled voxel of the copy maps (through world mm) onto a labelled voxel of the original
    idx = base.world_to_voxel(vol.voxel_to_world(np.argwhere(vol.array > 0)))
    assert np.abs(idx - np.round(idx)).max() < 1e-4
    back = np.zeros(base.shape, np.uint8)
    back[tuple(np.round(idx).astype(int).T)] = 1
    assert np.array_equal(back, read_mask(FIXTURES / CASES["ct_spleen_nifti"][1], base))
    # a mask written on the reoriented grid opens in nibabel on the same voxels and mm
    out = write_mask(vol.array, vol, tmp_path / f"out_{code}.nii.gz")
    back = nib.load(str(out))
    assert np.array_equal(np.asanyarray(back.dataobj), np.asanyarray(reoriented.dataobj))
    assert np.allclose(back.affine, reoriented.affine, atol=TOL_MM)
    # and read_mask resamples it back onto the original RAS grid exactly
    assert np.array_equal(read_mask(out, base, resample=True), read_mask(FIXTURES / CASES["ct_spleen_nifti"][1], base))


def test_4d_image_is_refused_and_one_volume_can_be_picked():
    path = FIXTURES / "nifti_4d_fmri" / "image.nii.gz"
    with pytest.raises(ImageDimensionError, match=r"4D image with 2 volumes.*3D volumes only.*volume_index"):
        read_volume(path)
    ref = nib.load(str(path))
    for n in (0, 1):
        vol = read_volume(path, volume_index=n)
        assert vol.shape == (12, 32, 32)
        assert vol.orientation_code() == "LAS"
        assert np.array_equal(vol.array, np.asanyarray(ref.dataobj)[..., n].T)
        corners = np.array([[0, 0, 0], [11, 31, 31], [5, 0, 31]])
        assert np.abs(vol.voxel_to_world(corners) - nib_world(ref.affine, corners)).max() < TOL_MM
    with pytest.raises(ImageDimensionError, match="out of range"):
        read_volume(path, volume_index=2)


def test_write_volume_round_trips_image_and_geometry(volumes, tmp_path):
    for name in ("mri_brain_nrrd", "ct_dicom_3slice", "mri_spinalcord_nifti"):
        vol = volumes[name]
        for suffix in (".nii.gz", ".nrrd", ".mha"):
            out = write_volume(vol, tmp_path / f"{name}{suffix}")
            back = read_volume(out)
            assert back.array.dtype == vol.array.dtype
            assert np.array_equal(back.array, vol.array)
            assert back.same_geometry(vol), (name, suffix)


def test_nifti_masks_copy_the_scans_qform_and_sform(tmp_path, caplog):
    """A scan whose qform and sform disagree: ITK uses the qform (sform code 2), nibabel the
    sform. The mask copies both, so each tool lines the mask up with the scan."""
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    q = np.diag([2.0, 3.0, 4.0, 1.0])
    q[:3, 3] = [10, 20, 30]
    s = np.diag([-2.0, 3.0, 4.0, 1.0])
    s[:3, 3] = [-10, 20, 30]
    img = nib.Nifti1Image(data, None)
    img.set_qform(q, code=1)
    img.set_sform(s, code=2)
    path = tmp_path / "scan.nii.gz"
    nib.save(img, str(path))
    with caplog.at_level(logging.WARNING):
        vol = read_volume(path)
    assert "qform" in caplog.text and "sform" in caplog.text
    itk_scan = sitk.ReadImage(str(path))
    kji = np.array([[0, 0, 0], [5, 4, 3]])
    assert np.allclose(vol.voxel_to_world(kji), itk_world(itk_scan, kji), atol=TOL_MM)
    out = write_mask(np.ones(vol.shape, np.uint8), vol, tmp_path / "mask.nii.gz")
    itk_mask = sitk.ReadImage(str(out))
    assert np.allclose(itk_world(itk_mask, kji), itk_world(itk_scan, kji), atol=TOL_MM)
    assert np.allclose(nib.load(str(out)).affine, nib.load(str(path)).affine, atol=TOL_MM)
    hdr = nib.load(str(out)).header
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)
