"""Issue 18: one validation step between reading and using a volume.

Generative: a table of header / voxel mutations of a real small NIfTI (hippocampus) and
of a 3-slice CT DICOM series, each refused with a typed :class:`SegLoopError` naming the
file; the unmutated files still read; ``segloop info`` on a bad file exits 2 with one line.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from unet_engine.cli.main import main
from unet_engine.errors import (DicomSeriesError, ImageDimensionError, ImageTooLargeError, InvalidVoxelDataError,
                                SegLoopError, UnsupportedImageError)
from unet_engine.io.volume_io import read_volume
from unet_engine.io.checks import check_geometry, validate_volume
from unet_engine.volume import Volume

DATA = Path(__file__).parent / "data"
NIFTI = DATA / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
DICOM = DATA / "io" / "ct_dicom_3slice" / "series"


def _base() -> nib.Nifti1Image:
    img = nib.load(str(NIFTI))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    hdr = img.header.copy()
    hdr.set_data_dtype(np.float32)
    return nib.Nifti1Image(data, img.affine, header=hdr)


def _pixdim(value: float):
    def mutate(img: nib.Nifti1Image) -> nib.Nifti1Image:
        img.header.set_qform(img.affine, code=1)
        img.header.set_sform(None, code=0)
        img.header["pixdim"][1] = value
        return img
    return mutate


def _zero_forms(img: nib.Nifti1Image) -> nib.Nifti1Image:
    hdr = img.header
    hdr["qform_code"] = 1
    hdr["sform_code"] = 1
    for key in ("srow_x", "srow_y", "srow_z"):
        hdr[key] = 0
    for key in ("quatern_b", "quatern_c", "quatern_d"):
        hdr[key] = 0
    hdr["pixdim"][1:4] = 0
    return img


def _zero_sform(img: nib.Nifti1Image) -> nib.Nifti1Image:
    hdr = img.header
    hdr["qform_code"] = 0
    hdr["sform_code"] = 2
    for key in ("srow_x", "srow_y", "srow_z"):
        hdr[key] = 0
    return img


def _empty_dim(img: nib.Nifti1Image) -> nib.Nifti1Image:
    img.header["dim"][3] = 0
    return img


def _complex(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj).astype(np.complex64) * (1 + 1j)
    hdr = img.header.copy()
    hdr.set_data_dtype(np.complex64)
    return nib.Nifti1Image(data, img.affine, header=hdr)


def _huge_slope(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.clip(np.asanyarray(img.dataobj), 0, 255).astype(np.uint8)
    hdr = img.header.copy()
    hdr.set_data_dtype(np.uint8)
    out = nib.Nifti1Image(data, img.affine, header=hdr)
    out.header.set_slope_inter(3e38, 0)
    return out


def _float64_huge(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj).astype(np.float64)
    data.flat[0] = 1e308
    hdr = img.header.copy()
    hdr.set_data_dtype(np.float64)
    return nib.Nifti1Image(data, img.affine, header=hdr)


MUTATIONS = [
    ("pixdim_nan", _pixdim(float("nan")), UnsupportedImageError, "pixdim"),
    ("pixdim_inf", _pixdim(float("inf")), UnsupportedImageError, "pixdim"),
    ("pixdim_negative", _pixdim(-1.0), UnsupportedImageError, "pixdim"),
    ("pixdim_zero", _pixdim(0.0), UnsupportedImageError, "pixdim"),
    ("zero_forms", _zero_forms, UnsupportedImageError, "geometry"),
    ("zero_sform", _zero_sform, UnsupportedImageError, "sform"),
    ("empty_dim", _empty_dim, ImageDimensionError, "empty"),
    ("complex64", _complex, InvalidVoxelDataError, "complex"),
    ("slope_3e38", _huge_slope, InvalidVoxelDataError, "float32"),
    ("float64_1e308", _float64_huge, InvalidVoxelDataError, "float32"),
]


def _save(img: nib.Nifti1Image, path: Path) -> None:
    """Write ``img`` with its header exactly as mutated (nib.save would recompute pixdim
    and the forms from the affine)."""
    hdr = img.header.copy()
    raw = np.asarray(img.dataobj)  # in-memory images: the unscaled array
    if int(hdr["dim"][3]) != 0:
        hdr.set_data_shape(raw.shape)
    hdr["vox_offset"] = 352
    body = np.asarray(raw, dtype=hdr.get_data_dtype()).tobytes(order="F")
    path.write_bytes(gzip.compress(bytes(hdr.binaryblock) + b"\0" * 4 + body, compresslevel=1))


@pytest.mark.parametrize("name,mutate,error,words", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutated_nifti_refused(tmp_path, name, mutate, error, words):
    path = tmp_path / f"{name}.nii.gz"
    _save(mutate(_base()), path)
    with pytest.raises(error) as info:
        read_volume(path)
    assert isinstance(info.value, SegLoopError)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "\n" not in str(info.value)


def _huge_claim(tmp_path: Path) -> Path:
    """A .nii.gz whose header claims 1900 x 1000 x 950 float64 (14 GB) with a tiny payload."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1900, 1000, 950))
    hdr.set_data_dtype(np.float64)
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    raw = bytes(hdr.binaryblock) + b"\0" * 4 + b"\0" * 100_000
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(raw))
    return path


def test_huge_claim_refused_before_allocating(tmp_path):
    path = _huge_claim(tmp_path)
    with pytest.raises((ImageTooLargeError, UnsupportedImageError)) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_memory_budget_refuses(tmp_path, monkeypatch):
    from unet_engine.io import checks as io_checks

    monkeypatch.setattr(io_checks, "usable_memory_bytes", lambda: 1000)
    with pytest.raises(ImageTooLargeError, match="GiB"):
        read_volume(NIFTI)


def test_unmutated_files_read(tmp_path):
    vol = read_volume(NIFTI)
    assert vol.shape[0] > 0 and all(s > 0 for s in vol.spacing)
    path = tmp_path / "base.nii.gz"
    nib.save(_base(), str(path))
    assert read_volume(path).shape == vol.shape
    series = tmp_path / "series"
    shutil.copytree(DICOM, series)
    assert read_volume(series).shape[0] == 3


def _mutate_series(tmp_path: Path, **tags) -> Path:
    folder = tmp_path / "series"
    shutil.copytree(DICOM, folder)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(f))
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(str(f))
    return folder


DICOM_MUTATIONS = [
    ("orientation_zero", {"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, "ImageOrientationPatient"),
    ("row_equals_col", {"ImageOrientationPatient": [1, 0, 0, 1, 0, 0]}, "ImageOrientationPatient"),
    ("pixel_spacing_zero", {"PixelSpacing": [0, 0]}, "PixelSpacing"),
]


@pytest.mark.parametrize("name,tags,words", DICOM_MUTATIONS, ids=[m[0] for m in DICOM_MUTATIONS])
def test_mutated_dicom_refused(tmp_path, name, tags, words):
    folder = _mutate_series(tmp_path, **tags)
    with pytest.raises(SegLoopError) as info:
        read_volume(folder)
    assert isinstance(info.value, (DicomSeriesError, UnsupportedImageError))
    assert str(folder) in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("name,tags,words", DICOM_MUTATIONS, ids=[m[0] for m in DICOM_MUTATIONS])
def test_mutated_single_dicom_file_refused(tmp_path, name, tags, words):
    folder = _mutate_series(tmp_path, **tags)
    first = sorted(folder.iterdir())[0]
    with pytest.raises(SegLoopError) as info:
        read_volume(first)
    assert first.name in str(info.value)


def test_validate_volume_direct():
    vol = Volume(array=np.zeros((2, 3, 4), dtype=np.float32))
    validate_volume(vol, None)
    vol.direction = np.zeros((3, 3))
    with pytest.raises(UnsupportedImageError, match="direction"):
        validate_volume(vol, Path("x.nii"))
    with pytest.raises(UnsupportedImageError, match="spacing"):
        check_geometry((1.0, 0.0, 1.0), np.eye(3), Path("x.nii"))
    with pytest.raises(ImageDimensionError, match="empty"):
        validate_volume(Volume(array=np.zeros((0, 3, 4))), Path("x.nii"))


def test_cli_info_bad_file_exits_2_one_line(tmp_path, capsys):
    path = tmp_path / "bad.nii.gz"
    _save(_pixdim(float("nan"))(_base()), path)
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "pixdim" in lines[0]


def test_plausible_payload_but_over_memory_refused(tmp_path, monkeypatch):
    """14 GB claimed: refused by the memory budget before anything is allocated."""
    from unet_engine.io import checks as io_checks

    monkeypatch.setattr(io_checks, "usable_memory_bytes", lambda: 16 << 30)
    path = _huge_claim(tmp_path)
    with pytest.raises(ImageTooLargeError, match="GiB") as info:
        read_volume(path)
    assert str(path) in str(info.value)
