"""Issue 18: truncated data behind an intact header, in every format, is a clean error.

Table-driven: real small files (hippocampus NIfTI, the brain NRRD, the MR DICOM series)
converted to each format in ``tmp_path`` and cut at several places; each cut must raise a
:class:`SegLoopError` whose message names the file (or the DICOM file in the folder) and
says what is wrong. The uncut copies still read, with the original voxels.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from unet_engine.errors import SegLoopError
from unet_engine.io.volume_io import read_volume

DATA = Path(__file__).parent / "data"
NIFTI = DATA / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
NRRD_GZ = DATA / "io" / "mri_brain_nrrd" / "image.nrrd"
MR_SERIES = DATA / "io" / "mr_hippocampus_dicom" / "series"

#: words one of which the message must contain: it says what is wrong
PROBLEM = ("truncated", "cut short", "damaged", "cannot read", "missing", "not a", "inflates", "ends after")


def _itk_copy(d: Path, name: str, compress: bool, src: Path = NIFTI) -> Path:
    out = d / name
    sitk.WriteImage(sitk.ReadImage(str(src)), str(out), useCompression=compress)
    return out


def _nii(d: Path) -> Path:
    out = d / "scan.nii"
    out.write_bytes(gzip.decompress(NIFTI.read_bytes()))
    return out


def _niigz(d: Path) -> Path:
    out = d / "scan.nii.gz"
    shutil.copy(NIFTI, out)
    return out


def _mhd(d: Path) -> Path:
    return _itk_copy(d, "scan.mhd", False)


def _series(d: Path) -> Path:
    out = d / "series"
    shutil.copytree(MR_SERIES, out)
    return out


def _single_dicom(d: Path) -> Path:
    out = d / "slice.dcm"
    shutil.copy(sorted(MR_SERIES.iterdir())[0], out)
    return out


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "nii": _nii,
    "nii.gz": _niigz,
    "nrrd-raw": lambda d: _itk_copy(d, "scan.nrrd", False),
    "nrrd-gzip": lambda d: _itk_copy(d, "scan.nrrd", True, NRRD_GZ),
    "mha-raw": lambda d: _itk_copy(d, "scan.mha", False),
    "mha-zlib": lambda d: _itk_copy(d, "scan.mha", True),
    "dicom-file": _single_dicom,
}


def _cut(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:n])


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_uncut_copy_reads(tmp_path: Path, fmt: str) -> None:
    vol = read_volume(BUILDERS[fmt](tmp_path))
    assert vol.array.size > 0 and np.all(np.isfinite(vol.spacing))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_truncated_file_is_a_clean_error(tmp_path: Path, fmt: str, keep: float | int) -> None:
    path = BUILDERS[fmt](tmp_path)
    _cut(path, keep)
    with pytest.raises(SegLoopError) as err:
        read_volume(path)
    msg = str(err.value)
    assert path.name in msg and any(w in msg for w in PROBLEM), msg
    assert "\n" not in msg


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 12, 40])
@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_last_bytes_cut_refused_or_identical(tmp_path: Path, fmt: str, cut: int) -> None:
    """Cut at the very end: refused, or (an NRRD gzip trailer byte its reader never reads) read with
    exactly the voxels of the uncut file; never altered voxels."""
    path = BUILDERS[fmt](tmp_path)
    ref = read_volume(path).array.copy()
    _cut(path, -cut)
    try:
        vol = read_volume(path)
    except SegLoopError as exc:
        assert path.name in str(exc) and any(w in str(exc) for w in PROBLEM), str(exc)
        return
    assert fmt == "nrrd-gzip" and np.array_equal(vol.array, ref), fmt


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_mhd_data_file_cut(tmp_path: Path, keep: float) -> None:
    header = _mhd(tmp_path)
    _cut(tmp_path / "scan.raw", keep)
    with pytest.raises(SegLoopError, match="truncated") as err:
        read_volume(header)
    assert "scan.mhd" in str(err.value)


@pytest.mark.parametrize("index, keep", [(0, 0.99), (7, 0.97), (31, 0.6), (12, 0.3)])
def test_series_member_cut_is_refused_not_dropped(tmp_path: Path, index: int, keep: float) -> None:
    """A slice file cut short must not silently vanish from the stack (31 of 32 slices)."""
    folder = _series(tmp_path)
    victim = sorted(folder.iterdir(), key=lambda p: p.name)[index]
    _cut(victim, keep)
    with pytest.raises(SegLoopError) as err:
        read_volume(folder)
    msg = str(err.value)
    assert "series" in msg and victim.name in msg, msg


@pytest.mark.parametrize("share", [0.0, 0.5, 0.99])
def test_short_pixel_data_element(tmp_path: Path, share: float) -> None:
    """PixelData shorter than Rows x Columns x bits (the element itself, not the file, is short)."""
    folder = _series(tmp_path)
    victim = sorted(folder.iterdir(), key=lambda p: p.name)[4]
    ds = pydicom.dcmread(victim)
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * share) // 2 * 2]
    ds.save_as(victim)
    with pytest.raises(SegLoopError) as err:
        read_volume(folder)
    assert victim.name in str(err.value) or "slice" in str(err.value)
