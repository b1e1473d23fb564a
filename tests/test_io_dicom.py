"""DICOM series: ordering, rescale, and refusal of broken series (never a silent stretch)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest_io import FIXTURES, copy_fixture, entries, reference_image

from unet_engine.errors import DicomSeriesError
from unet_engine.io.volume_io import read_dicom_series, read_volume

CT = FIXTURES / "ct_dicom_3slice" / "series"
MR = FIXTURES / "mr_hippocampus_dicom" / "series"


def _position(path: Path) -> np.ndarray:
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return np.array([float(v) for v in r.GetMetaData("0020|0032").split("\\")])


def test_ct_series_is_rescaled_to_hounsfield_units():
    vol = read_volume(CT)
    assert vol.modality == "CT" and vol.shape == (3, 512, 512)
    assert (int(vol.array.min()), int(vol.array.max())) == (-3024, 1381)
    for f in sorted(CT.iterdir()):
        # stored pixels: the last 512*512*2 bytes (uncompressed little-endian int16), intercept -1024, slope 1
        raw = np.frombuffer(f.read_bytes()[-512 * 512 * 2:], dtype="<i2").reshape(512, 512)
        k = int(round(vol.world_to_voxel(_position(f))[0]))
        assert np.array_equal(vol.array[k], raw.astype(np.int32) - 1024)


def test_slices_are_ordered_by_position_and_geometry_is_exact():
    vol = read_volume(CT)
    positions = sorted((_position(f) for f in CT.iterdir()), key=lambda p: p[2])
    assert np.allclose(vol.origin, positions[0], atol=1e-6)
    assert np.allclose(vol.voxel_to_world((2, 0, 0)), positions[2], atol=1e-6)
    assert vol.spacing[0] == pytest.approx(1.0, abs=1e-9)
    assert vol.orientation_code() == "LPS"


def test_mr_hippocampus_series():
    vol = read_volume(MR)
    assert vol.modality == "MR" and vol.shape == (32, 51, 35)
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(reference_image("mr_hippocampus_dicom/series")))


def test_file_names_in_the_wrong_order_do_not_matter(tmp_path):
    folder = tmp_path / "shuffled"
    folder.mkdir()
    files = sorted(MR.iterdir())
    perm = np.random.default_rng(3).permutation(len(files))
    for f, n in zip(files, perm):
        name = f"IM{n:04d}" if n % 3 else f"{n:03d}.dcm"  # some without an extension
        shutil.copyfile(f, folder / name)
    vol = read_volume(folder)
    ref = read_volume(MR)
    assert np.array_equal(vol.array, ref.array) and vol.same_geometry(ref)


def test_missing_slice_is_reported_with_its_position(tmp_path):
    folder = copy_fixture("mr_hippocampus_dicom/series", tmp_path / "series")
    by_z = sorted(folder.iterdir(), key=lambda f: _position(f)[2])
    z_gone = _position(by_z[10])[2]
    by_z[10].unlink()
    before = entries(folder)
    with pytest.raises(DicomSeriesError, match="1 slice\\(s\\) missing") as info:
        read_volume(folder)
    msg = str(info.value)
    assert f"should be at {z_gone:.2f} mm" in msg
    assert by_z[9].name in msg and by_z[11].name in msg and "series" in msg
    assert entries(folder) == before


def test_first_or_last_slice_missing_is_not_detectable_but_geometry_stays_exact(tmp_path):
    folder = copy_fixture("mr_hippocampus_dicom/series", tmp_path / "series")
    by_z = sorted(folder.iterdir(), key=lambda f: _position(f)[2])
    by_z[0].unlink()
    vol = read_volume(folder)
    assert vol.shape[0] == 31 and np.allclose(vol.origin, _position(by_z[1]))


def test_duplicated_slice(tmp_path):
    folder = copy_fixture("ct_dicom_3slice/series", tmp_path / "series")
    shutil.copyfile(folder / "02.dcm", folder / "02_copy.dcm")
    with pytest.raises(DicomSeriesError, match="same position") as info:
        read_volume(folder)
    assert "02.dcm" in str(info.value) and "02_copy.dcm" in str(info.value)


def test_two_series_in_one_folder_opens_the_larger_and_says_so(tmp_path, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in CT.iterdir():
        shutil.copyfile(f, folder / f"ct_{f.name}")
    for f in MR.iterdir():
        shutil.copyfile(f, folder / f"mr_{f.name}")
    with caplog.at_level(logging.WARNING, logger="unet_engine.io.dicom"):
        vol = read_volume(folder)
    assert vol.modality == "MR" and vol.shape == (32, 51, 35)
    assert "2 DICOM series" in caplog.text and "CT, 3 slices" in caplog.text
    ct_uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(CT))[0]
    ct = read_dicom_series(folder, series_uid=ct_uid)
    assert ct.modality == "CT" and ct.shape == (3, 512, 512)
    with pytest.raises(DicomSeriesError, match="no series with UID"):
        read_dicom_series(folder, series_uid="1.2.3")


def test_non_dicom_files_in_the_folder_are_skipped(tmp_path):
    folder = copy_fixture("ct_dicom_3slice/series", tmp_path / "series")
    (folder / "README.txt").write_text("exported by PACS")
    (folder / "empty.dcm").write_bytes(b"")
    assert read_volume(folder).shape == (3, 512, 512)


def test_single_dicom_file_opens_as_one_slice():
    vol = read_volume(CT / "01.dcm")
    assert vol.shape == (1, 512, 512) and vol.modality == "CT"
    assert vol.spacing == pytest.approx((1.25, 0.810547, 0.810547))  # k: SliceThickness
    assert np.allclose(vol.origin, _position(CT / "01.dcm"))
    assert vol.array.min() >= -3024 and vol.array.dtype == np.int16


# ----- synthetic series written with SimpleITK's DICOM writer --------------------------------
UID = "1.2.826.0.1.3680043.2.1125.1.4242"
COS, SIN = np.cos(0.3), np.sin(0.3)
OBLIQUE = (COS, SIN, 0.0, -SIN, COS, 0.0)


def write_slice(path: Path, arr: np.ndarray, ipp, iop=OBLIQUE, spacing=(0.5, 0.7), rescale=None, uid=UID) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing(spacing)
    tags = {"0008|0060": "CT", "0020|000e": uid, "0020|0032": "\\".join(f"{v:.6f}" for v in ipp),
            "0020|0037": "\\".join(f"{v:.6f}" for v in iop), "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL"}
    if rescale is not None:
        tags["0028|1053"], tags["0028|1052"] = (str(v) for v in rescale)
    for key, value in tags.items():
        img.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(img)


def synthetic_series(folder: Path, n: int = 5, step: float = 2.0, **overrides) -> Path:
    """An oblique series; ``overrides[i] = dict(...)`` changes slice i's arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    for i in range(n):
        kw = {"arr": np.arange(120).reshape(10, 12) + 100 * i, "ipp": np.array([1.0, 2.0, 3.0]) + step * i * normal}
        kw.update(overrides.get(f"s{i}", {}))
        write_slice(folder / f"s{i}.dcm", **kw)
    return folder


def test_oblique_series_matches_itk_geometry(tmp_path):
    folder = synthetic_series(tmp_path / "obl")
    vol = read_volume(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(ref))
    assert vol.spacing == pytest.approx((2.0, 0.7, 0.5))
    corners = np.array([[0, 0, 0], [4, 9, 11], [2, 0, 11]], dtype=float)
    itk = np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(c[::-1])) for c in corners])
    assert np.abs(vol.voxel_to_world(corners) - itk).max() < 1e-4


def test_slices_with_different_orientation_are_refused(tmp_path):
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    folder = synthetic_series(tmp_path / "s", s2={"iop": (1, 0, 0, 0, 1, 0), "ipp": np.array([1, 2, 3]) + 4 * normal})
    with pytest.raises(DicomSeriesError, match="oriented differently.*s2.dcm"):
        read_volume(folder)


def test_slices_with_different_size_are_refused(tmp_path):
    folder = synthetic_series(tmp_path / "s", s3={"arr": np.zeros((10, 11))})
    with pytest.raises(DicomSeriesError, match="differ in size.*s3.dcm is 11x10"):
        read_volume(folder)


def test_uneven_spacing_is_refused(tmp_path):
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    folder = synthetic_series(tmp_path / "s", s4={"ipp": np.array([1.0, 2.0, 3.0]) + 9.0 * normal})
    with pytest.raises(DicomSeriesError, match="uneven slice spacing: 3 mm between s3.dcm and s4.dcm"):
        read_volume(folder)


def test_tilted_stack_is_refused(tmp_path):
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    shifts = {f"s{i}": {"ipp": np.array([1.0, 2.0, 3.0]) + 2.0 * i * normal + 0.4 * i * np.array(OBLIQUE[3:])}
              for i in range(5)}
    folder = synthetic_series(tmp_path / "s", **shifts)
    with pytest.raises(DicomSeriesError, match="tilted by about 11.3 degrees"):
        read_volume(folder)


def test_per_slice_rescale_is_kept_exactly(tmp_path):
    folder = synthetic_series(tmp_path / "s", s2={"rescale": (2, -3)})
    vol = read_volume(folder)
    assert vol.array.dtype == np.float32
    for i in range(5):
        single = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"s{i}.dcm")))[0]
        assert np.array_equal(vol.array[i], single.astype(np.float32))


def test_missing_position_tags_are_refused(tmp_path):
    folder = synthetic_series(tmp_path / "s", n=4)
    blob = (folder / "s2.dcm").read_bytes()
    tag = b"\x20\x00\x32\x00"  # (0020,0032) ImagePositionPatient, little endian
    assert blob.count(tag) == 1
    (folder / "s2.dcm").write_bytes(blob.replace(tag, b"\x20\x00\x33\x00"))  # renumber it to (0020,0033)
    with pytest.raises(DicomSeriesError, match="s2.dcm has no ImagePositionPatient"):
        read_volume(folder)
