"""2D pictures (PNG, JPEG, TIFF, BMP) and single slices open as one-slice volumes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from unet_engine.errors import UnsupportedImageError
from unet_engine.io.volume_io import read_mask, read_volume, write_mask

RNG = np.random.default_rng(11)
RGB = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _save(path, arr, vector, spacing=None):
    img = sitk.GetImageFromArray(arr, isVector=vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_rgb_png_is_a_photo(tmp_path):
    _save(tmp_path / "a.png", RGB, True, spacing=(0.5, 0.25))
    vol = read_volume(tmp_path / "a.png")
    assert vol.shape == (1, 20, 30) and vol.array.shape == (1, 20, 30, 3) and vol.channels == 3
    assert vol.modality == "photo"
    assert np.array_equal(vol.array[0], RGB)
    assert vol.spacing == pytest.approx((1.0, 0.25, 0.5))  # from the PNG's pHYs chunk


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grayscale_png(tmp_path, dtype):
    gray = (RGB[..., 0].astype(dtype) * (200 if dtype == np.uint16 else 1)).astype(dtype)
    _save(tmp_path / "g.png", gray, False)
    vol = read_volume(tmp_path / "g.png")
    assert vol.array.shape == (1, 20, 30) and vol.array.dtype == dtype and vol.modality == "unknown"
    assert np.array_equal(vol.array[0], gray)
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert vol.orientation_code() == "LPS"


def test_alpha_is_dropped(tmp_path):
    _save(tmp_path / "rgba.png", np.dstack([RGB, RGB[..., :1]]), True)
    assert np.array_equal(read_volume(tmp_path / "rgba.png").array[0], RGB)
    _save(tmp_path / "la.png", np.dstack([RGB[..., 0], RGB[..., 1]]), True)
    with pytest.raises(UnsupportedImageError, match="gray \\+ alpha"):  # SimpleITK cannot read LA PNGs
        read_volume(tmp_path / "la.png")


def test_gray_stored_as_rgb_bmp_opens_gray(tmp_path):
    _save(tmp_path / "g.bmp", RGB[..., 0], False)  # ITK's BMP writer stores 3 equal channels
    vol = read_volume(tmp_path / "g.bmp")
    assert vol.array.shape == (1, 20, 30) and np.array_equal(vol.array[0], RGB[..., 0])
    _save(tmp_path / "c.bmp", RGB, True)
    assert read_volume(tmp_path / "c.bmp").array.shape == (1, 20, 30, 3)


def test_jpeg_and_tiff(tmp_path):
    _save(tmp_path / "a.jpg", RGB, True)
    vol = read_volume(tmp_path / "a.jpg")
    assert vol.array.shape == (1, 20, 30, 3) and vol.modality == "photo"
    f = RNG.normal(size=(20, 30)).astype(np.float32)
    _save(tmp_path / "f.tiff", f, False, spacing=(0.2, 0.4))
    vol = read_volume(tmp_path / "f.tiff")
    assert vol.array.shape == (1, 20, 30) and np.array_equal(vol.array[0], f)
    assert vol.spacing == pytest.approx((1.0, 0.4, 0.2), abs=1e-6)


def test_multipage_tiff_opens_as_a_stack(tmp_path):
    stack = RNG.integers(0, 255, (4, 20, 30), dtype=np.uint8)
    _save(tmp_path / "stack.tif", stack, False)
    vol = read_volume(tmp_path / "stack.tif")
    assert vol.shape == (4, 20, 30) and np.array_equal(vol.array, stack)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_mask_on_a_photo_round_trips(tmp_path, suffix):
    _save(tmp_path / "a.png", RGB, True, spacing=(0.5, 0.25))
    vol = read_volume(tmp_path / "a.png")
    mask = (vol.array[..., 0] > 128).astype(np.uint8)
    out = write_mask(mask, vol, tmp_path / f"mask{suffix}")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), mask)
    assert np.array_equal(read_mask(out, vol), mask)
