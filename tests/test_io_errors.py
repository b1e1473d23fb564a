"""Bad input gives a typed error naming the file, and nothing half-written is left behind.

Each bad file is made in tmp_path; each test runs "open the scan, then save a mask next to
it" and checks that the error comes from the read, that the mask file never appears and
that the folder holds exactly what it held before (no stray temp files).
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest_io import FIXTURES, entries

from unet_engine.errors import (DicomSeriesError, ImageDimensionError, ImageTooLargeError, InvalidVoxelDataError,
                                SegLoopError, UnsupportedImageError)
from unet_engine.io.volume_io import read_volume, write_mask

SPLEEN = FIXTURES / "ct_spleen_nifti" / "image.nii.gz"


def open_then_save(src: Path, **kwargs) -> None:
    vol = read_volume(src, **kwargs)
    write_mask(np.zeros(vol.shape, np.uint8), vol, src.parent / "mask.nii.gz")


def assert_refused(src: Path, error: type[SegLoopError], match: str, **kwargs) -> SegLoopError:
    before = entries(src.parent)
    with pytest.raises(error, match=match) as info:
        open_then_save(src, **kwargs)
    assert str(src.name) in str(info.value) or str(src) in str(info.value)
    assert entries(src.parent) == before, "something was left behind"
    assert not (src.parent / "mask.nii.gz").exists()
    return info.value


def _random(n: int = 4096) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".dcm"])
def test_zero_byte_file(tmp_path, suffix):
    src = tmp_path / f"scan{suffix}"
    src.write_bytes(b"")
    assert_refused(src, UnsupportedImageError, "empty")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".tif", ".bmp",
                                    ".dcm"])
def test_random_bytes_with_an_image_extension(tmp_path, suffix):
    src = tmp_path / f"scan{suffix}"
    src.write_bytes(_random())
    assert_refused(src, UnsupportedImageError, "damaged|not a|cannot read")


def test_gzip_of_random_bytes_named_nii_gz(tmp_path):
    src = tmp_path / "scan.nii.gz"
    src.write_bytes(gzip.compress(_random()))
    assert_refused(src, UnsupportedImageError, "NIfTI")


def test_truncated_nii_gz(tmp_path):
    blob = SPLEEN.read_bytes()
    src = tmp_path / "scan.nii.gz"
    src.write_bytes(blob[: len(blob) // 2])
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(src))).shape  # SimpleITK alone reads it without complaint
    assert_refused(src, UnsupportedImageError, "truncated")


def test_truncated_uncompressed_nii(tmp_path):
    img = nib.load(str(SPLEEN))
    full = tmp_path / "full.nii"
    nib.save(img, str(full))
    src = tmp_path / "scan.nii"
    src.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    assert_refused(src, UnsupportedImageError, "truncated")


@pytest.mark.parametrize("suffix,compress", [(".nrrd", True), (".nrrd", False), (".mha", True), (".mha", False)])
def test_truncated_nrrd_and_metaimage(tmp_path, suffix, compress):
    full = tmp_path / f"full{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(FIXTURES / "mri_brain_nrrd" / "image.nrrd")), str(full), compress)
    src = tmp_path / f"scan{suffix}"
    src.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    full.unlink()
    assert_refused(src, UnsupportedImageError, "truncated|damaged")


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_mhd_data_file(tmp_path, compress):
    """SimpleITK alone reads a short .raw/.zraw beside an .mhd with only a console warning."""
    src = tmp_path / "scan.mhd"
    sitk.WriteImage(sitk.ReadImage(str(FIXTURES / "mri_breast_nrrd" / "image.nrrd")), str(src), compress)
    data = next(p for p in tmp_path.iterdir() if p.suffix in (".raw", ".zraw"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert_refused(src, UnsupportedImageError, "truncated")


def test_mhd_whose_data_file_is_missing(tmp_path):
    src = tmp_path / "scan.mhd"
    sitk.WriteImage(sitk.ReadImage(str(FIXTURES / "mri_breast_nrrd" / "image.nrrd")), str(src), False)
    next(p for p in tmp_path.iterdir() if p.suffix == ".raw").unlink()
    assert_refused(src, UnsupportedImageError, "missing")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(UnsupportedImageError, match="no such file"):
        read_volume(tmp_path / "nope.nii.gz")
    src = tmp_path / "notes.txt"
    src.write_text("not an image")
    assert_refused(src, UnsupportedImageError, "unknown image type")


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / "scan.nii.gz").write_bytes(SPLEEN.read_bytes())
    before = entries(folder)
    with pytest.raises(DicomSeriesError, match="no DICOM images") as info:
        read_volume(folder)
    assert "study" in str(info.value)
    assert entries(folder) == before


def _absurd_nifti(path: Path, shape: tuple[int, ...], compress: bool) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    blob = hdr.binaryblock + b"\0" * 4 + b"\0" * 1000
    path.write_bytes(gzip.compress(blob) if compress else blob)


@pytest.mark.parametrize("compress", [True, False])
def test_header_claiming_absurd_size_fails_before_allocating(tmp_path, compress):
    src = tmp_path / ("scan.nii.gz" if compress else "scan.nii")
    _absurd_nifti(src, (30000, 30000, 30000), compress)
    tracemalloc.start()
    try:
        err = assert_refused(src, ImageTooLargeError, "voxels")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert "27,000,000,000,000" in str(err)


def test_header_claiming_more_than_the_file_can_hold(tmp_path):
    """Within the voxel limit, but more data than a file of this size can hold."""
    src = tmp_path / "scan.nii.gz"
    _absurd_nifti(src, (2000, 2000, 500), True)
    assert_refused(src, UnsupportedImageError, "cannot hold")
    src2 = tmp_path / "raw.nii"
    _absurd_nifti(src2, (200, 200, 100), False)
    assert_refused(src2, UnsupportedImageError, "truncated")


def test_nrrd_header_claiming_absurd_size(tmp_path):
    src = tmp_path / "scan.nrrd"
    src.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\n"
                    b"sizes: 100000 100000 100000\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                    b"kinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n\n"
                    + b"\0" * 1000)
    assert_refused(src, ImageTooLargeError, "voxels")
    small = tmp_path / "small.nrrd"
    small.write_bytes(src.read_bytes().replace(b"100000 100000 100000", b"300 300 300"))
    assert_refused(small, UnsupportedImageError, "truncated")


def test_max_voxels_limit(tmp_path):
    src = tmp_path / "scan.nii.gz"
    src.write_bytes(SPLEEN.read_bytes())
    assert_refused(src, ImageTooLargeError, "limit", max_voxels=1000)


def test_4d_nifti_and_4d_metaimage(tmp_path):
    src = tmp_path / "fmri.nii.gz"
    src.write_bytes((FIXTURES / "nifti_4d_fmri" / "image.nii.gz").read_bytes())
    err = assert_refused(src, ImageDimensionError, "2 volumes")
    assert "3D volumes only" in str(err) and "volume_index" in str(err)
    vol3 = sitk.ReadImage(str(FIXTURES / "mri_breast_nrrd" / "image.nrrd"))
    four = sitk.JoinSeries([vol3, vol3, vol3])
    src = tmp_path / "series4d.mha"
    sitk.WriteImage(four, str(src))
    assert_refused(src, ImageDimensionError, "3 volumes")
    picked = read_volume(src, volume_index=2)
    assert np.array_equal(picked.array, sitk.GetArrayFromImage(vol3))


def test_vector_nifti_is_refused(tmp_path):
    src = tmp_path / "vectors.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1, 3), np.float32), np.eye(4)), str(src))
    assert_refused(src, ImageDimensionError, "3 values")


def _with_nonfinite(path: Path, values: list[float]) -> np.ndarray:
    data = np.linspace(-5, 5, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    data.flat[[3, 17, 40][: len(values)]] = values
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return data


def test_nan_and_inf_voxels_refused_with_their_count(tmp_path):
    src = tmp_path / "scan.nii.gz"
    _with_nonfinite(src, [np.nan, np.inf, -np.inf])
    err = assert_refused(src, InvalidVoxelDataError, "3 of 120 voxels are NaN or infinite")
    assert "allow_nonfinite" in str(err)


def test_allow_nonfinite_replaces_them_with_the_finite_minimum(tmp_path):
    src = tmp_path / "scan.nii.gz"
    data = _with_nonfinite(src, [np.nan, np.inf])
    vol = read_volume(src, allow_nonfinite=True)
    assert np.isfinite(vol.array).all()
    finite_min = np.nanmin(np.where(np.isfinite(data), data, np.nan))
    assert vol.array.T.flat[3] == finite_min and vol.array.T.flat[17] == finite_min


def test_all_nonfinite_is_refused_even_when_allowed(tmp_path):
    src = tmp_path / "scan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 4, 5), np.nan, np.float32)), str(src))
    assert_refused(src, InvalidVoxelDataError, "all 60 voxels", allow_nonfinite=True)


def test_errors_carry_the_path_attribute(tmp_path):
    src = tmp_path / "scan.nii.gz"
    src.write_bytes(b"")
    with pytest.raises(UnsupportedImageError) as info:
        read_volume(src)
    assert info.value.path == src
    assert os.linesep not in str(info.value)


def test_slicer_segmentation_with_layers(tmp_path):
    layers = np.zeros((4, 5, 6, 3), np.uint8)  # k, j, i, layer
    layers[1, 1, 1, 2] = 1
    src = tmp_path / "overlap.seg.nrrd"
    src.write_bytes(b"NRRD0004\ntype: uchar\ndimension: 4\nspace: left-posterior-superior\nsizes: 3 6 5 4\n"
                    b"space directions: none (1,0,0) (0,1,0) (0,0,1)\nkinds: list domain domain domain\n"
                    b"endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n" + layers.tobytes())
    assert_refused(src, ImageDimensionError, "3 layers.*Export to labelmap")
    assert read_volume(src, volume_index=2).array[1, 1, 1] == 1
