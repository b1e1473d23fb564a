"""NIfTI voxel reading (ISA-L inflate): same voxels as nibabel, truncation, byte order, scaling, multi-member gzip."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from conftest_io import FIXTURES

from unet_engine.errors import UnsupportedImageError
from unet_engine.io.volume_io import read_volume

SPLEEN = FIXTURES / "ct_spleen_nifti" / "image.nii.gz"


def test_reads_the_same_voxels_as_nibabel():
    for rel in ("ct_spleen_nifti/image.nii.gz", "mri_spinalcord_nifti/image.nii.gz", "nifti_4d_fmri/image.nii.gz"):
        path = FIXTURES / rel
        ref = np.asanyarray(nib.load(str(path)).dataobj)
        kw = {"volume_index": 1} if ref.ndim == 4 else {}
        vol = read_volume(path, **kw)
        expected = ref[..., 1].T if ref.ndim == 4 else ref.T
        assert vol.array.dtype == expected.dtype and np.array_equal(vol.array, expected)


def test_truncation_is_caught(tmp_path):
    blob = SPLEEN.read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(blob[: int(len(blob) * 0.9)])
    with pytest.raises(UnsupportedImageError, match="truncated"):
        read_volume(path)
    flipped = bytearray(blob)
    flipped[len(blob) // 2: len(blob) // 2 + 64] = bytes(64)  # damage inside the stream
    path.write_bytes(bytes(flipped))
    with pytest.raises(UnsupportedImageError, match="damaged|truncated"):
        read_volume(path)


def test_multi_member_gzip(tmp_path):
    raw = gzip.decompress(SPLEEN.read_bytes())
    path = tmp_path / "pigz.nii.gz"
    parts = (raw[:5000], raw[5000:300000], raw[300000:])
    path.write_bytes(b"".join(gzip.compress(p, compresslevel=1) for p in parts))
    assert np.array_equal(read_volume(path).array, read_volume(SPLEEN).array)


@pytest.mark.parametrize("dtype", [">i2", "<u2", ">f4", "<f8", "u1", "i1", "<i4"])
def test_byte_order_and_types(tmp_path, dtype):
    data = (np.arange(3 * 4 * 5) - 20).reshape(3, 4, 5).astype(dtype if "u" not in dtype else "i8").clip(
        0 if "u" in dtype else None).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([1.5, 2.0, 2.5, 1.0]),
                          header=nib.Nifti1Header(endianness=">" if dtype.startswith(">") else "<"))
    img.header.set_data_dtype(np.dtype(dtype))
    path = tmp_path / "t.nii.gz"
    nib.save(img, str(path))
    assert nib.load(str(path)).header.get_data_dtype() == np.dtype(dtype)
    vol = read_volume(path)
    assert vol.array.dtype.isnative and vol.array.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(vol.array, data.T)


def test_scl_slope_and_inter_applied_like_nibabel(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, -10.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    vol = read_volume(path)
    ref = np.asanyarray(nib.load(str(path)).dataobj)
    assert vol.array.dtype == ref.dtype and np.array_equal(vol.array, ref.T)
    assert vol.array.min() == -10.0


def test_uncompressed_nii_and_rgb24(tmp_path):
    path = tmp_path / "plain.nii"
    nib.save(nib.load(str(SPLEEN)), str(path))
    assert np.array_equal(read_volume(path).array, read_volume(SPLEEN).array)
    rgb = np.zeros((4, 5, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 10, 20, np.arange(40, dtype=np.uint8).reshape(4, 5, 2)
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    vol = read_volume(tmp_path / "rgb.nii.gz")
    assert vol.array.shape == (2, 5, 4, 3) and vol.modality == "photo"
    assert np.array_equal(vol.array[..., 2], rgb["B"].T) and (vol.array[..., 0] == 10).all()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_rgb_volume_round_trips(tmp_path, suffix):
    """write_volume stores colour as ITK does (NIfTI: a 3-component vector); it reads back."""
    from unet_engine.io.volume_io import write_volume
    from unet_engine.volume import Volume

    rgb = Volume(array=(np.arange(3 * 4 * 5 * 3) % 250).astype(np.uint8).reshape(3, 4, 5, 3), spacing=(3, 2, 1))
    back = read_volume(write_volume(rgb, tmp_path / f"rgb{suffix}"))
    assert back.modality == "photo" and np.array_equal(back.array, rgb.array) and back.same_geometry(rgb)
