"""Issue 18: a DICOM folder holding a SEG next to its CT opens the CT; truncated DICOM
pixel data and a MetaImage that claims compression over raw bytes are refused with a typed
error naming the file (``segloop info`` exits 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from unet_engine.cli.main import main
from unet_engine.errors import DicomSeriesError, InvalidVoxelDataError
from unet_engine.io.volume_io import read_volume

DATA = Path(__file__).parent / "data"
CT = DATA / "io" / "ct_dicom_3slice" / "series"
SEG = DATA / "dicom_objects" / "liver_seg.dcm"


def _copy_ct(dest: Path) -> Path:
    shutil.copytree(CT, dest)
    return dest


def test_folder_with_seg_and_ct_opens_the_ct(tmp_path):
    folder = _copy_ct(tmp_path / "mixed")
    shutil.copyfile(SEG, folder / "liver_seg.dcm")
    vol = read_volume(folder)
    ref = read_volume(CT)
    assert vol.modality == "CT" and vol.shape == (3, 512, 512)
    assert int(vol.array.min()) < -1000  # Hounsfield units, not a 0/1 label map
    np.testing.assert_array_equal(vol.array, ref.array)


def test_truncated_pixel_data_in_a_series_is_refused_naming_the_file(tmp_path):
    folder = _copy_ct(tmp_path / "series")
    ds = pydicom.dcmread(folder / "02.dcm")
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(folder / "02.dcm")
    with pytest.raises(DicomSeriesError, match="truncated") as info:
        read_volume(folder)
    assert "02.dcm" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InvalidVoxelDataError, match="truncated") as info:
        read_volume(folder / "02.dcm")
    assert "02.dcm" in str(info.value)
    assert read_volume(folder / "01.dcm").shape == (1, 512, 512)  # the intact slices still read


def _mha_pair(tmp_path: Path) -> tuple[Path, Path]:
    good = tmp_path / "good.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)), str(good),
                    useCompression=False)
    raw = good.read_bytes()
    assert b"CompressedData = False" in raw
    bad = tmp_path / "bad.mha"
    bad.write_bytes(raw.replace(b"CompressedData = False", b"CompressedData = True"))
    return good, bad


def test_metaimage_claiming_compression_over_raw_bytes_is_refused(tmp_path):
    good, bad = _mha_pair(tmp_path)
    with pytest.raises(InvalidVoxelDataError, match="CompressedData = True") as info:
        read_volume(bad)
    assert "bad.mha" in str(info.value) and "\n" not in str(info.value)
    np.testing.assert_array_equal(read_volume(good).array, np.arange(60).reshape(3, 4, 5))
    compressed = tmp_path / "z.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)), str(compressed),
                    useCompression=True)
    np.testing.assert_array_equal(read_volume(compressed).array, np.arange(60).reshape(3, 4, 5))


def test_segloop_info_exits_2_on_each_broken_file(tmp_path, capsys):
    folder = _copy_ct(tmp_path / "series")
    ds = pydicom.dcmread(folder / "03.dcm")
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(folder / "03.dcm")
    _, bad = _mha_pair(tmp_path)
    for target, name in ((folder, "03.dcm"), (folder / "03.dcm", "03.dcm"), (bad, "bad.mha")):
        capsys.readouterr()
        assert main(["info", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert name in err and len(err.splitlines()) == 1, err
