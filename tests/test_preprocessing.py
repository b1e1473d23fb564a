"""Preprocessing: robust normalisation, resampling, padding and slice stacks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet_engine.model.checkpoint import ModelCard
from unet_engine.model.network import ModelSpec
from unet_engine.model.preprocessing import (
    PreprocessConfig,
    looks_like_hu,
    normalize,
    pad_to_multiple,
    prepare_image,
    prepare_label,
    resample_back,
    resample_to_spacing,
    resolve_mode,
    slice_axis_for_spacing,
    slice_stack,
)
from unet_engine.volume import Volume

HIPPO = Path(__file__).parent / "data" / "hippocampus"


def _mr(seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros((8, 32, 32), np.float32)
    a[:, 4:28, 4:28] = rng.gamma(4.0, 50.0, (8, 24, 24))
    return a * scale


def test_mr_zscore_over_foreground():
    out = normalize(_mr(), PreprocessConfig(mode="mr"))
    assert out.dtype == np.float32
    fg = out[:, 4:28, 4:28]
    assert abs(fg.mean()) < 0.05 and abs(fg.std() - 1) < 0.05
    assert out[0, 0, 0] < fg.mean()  # background below the foreground mean


def test_scale_invariant_so_huge_maxima_do_not_matter():
    # hippocampus cases: maxima from ~112 to ~1.7e6; a percentile z-score does not care
    a = normalize(_mr(), PreprocessConfig(mode="mr"))
    b = normalize(_mr(scale=1.7e6 / 600), PreprocessConfig(mode="mr"))
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_outlier_is_clipped_not_used_as_maximum():
    img = _mr()
    img[0, 10, 10] = 1.7e6
    out = normalize(img, PreprocessConfig(mode="mr"))
    ref = normalize(_mr(), PreprocessConfig(mode="mr"))
    mask = np.ones(img.shape, bool)
    mask[0, 10, 10] = False
    assert np.abs(out[mask] - ref[mask]).max() < 0.05  # one bright voxel barely moves the rest
    assert out[0, 10, 10] < 5


@pytest.mark.parametrize("value", [0, 7, 255])
def test_constant_images_give_zeros(value):
    for dtype in (np.uint8, np.int16, np.float32):
        out = normalize(np.full((3, 5, 7), value, dtype))
        assert out.dtype == np.float32 and np.all(out == 0)


def test_nan_and_inf_are_replaced():
    img = _mr()
    img[0, 5, 5] = np.nan
    img[1, 6, 6] = np.inf
    img[2, 7, 7] = -np.inf
    out = normalize(img, PreprocessConfig(mode="mr"))
    assert np.isfinite(out).all()
    assert out[1, 6, 6] == out.max() and out[0, 5, 5] == out.min()
    assert np.isfinite(normalize(np.full((2, 3, 3), np.nan, np.float32))).all()


def test_uint8_and_float_inputs_agree():
    img = np.clip(_mr() / 4, 0, 255)
    a = normalize(img.astype(np.uint8), PreprocessConfig(mode="mr"))
    b = normalize(np.floor(img).astype(np.float32), PreprocessConfig(mode="mr"))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_real_hippocampus_cases_uint8_and_float():
    for case in ("hippocampus_001", "hippocampus_003"):
        arr = np.asanyarray(nib.load(HIPPO / "imagesTr" / f"{case}.nii.gz").dataobj)
        out = normalize(arr)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert -6 < out.min() < 0 < out.max() < 6


def test_ct_window_and_auto_detection():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 1500, (4, 20, 20)).astype(np.int16)
    assert looks_like_hu(ct) and resolve_mode(ct, PreprocessConfig()) == "ct"
    assert not looks_like_hu(_mr())
    assert resolve_mode(_mr(), PreprocessConfig(), modality="CT") == "ct"
    out = normalize(ct)
    assert out.min() >= -1 and out.max() <= 1
    assert out[ct <= -1000].max() == -1 and out[ct >= 1000].min() == 1
    narrow = normalize(ct, PreprocessConfig(mode="ct", ct_window=(-100, 200)))
    np.testing.assert_allclose(narrow[ct == 50], 0.0, atol=1e-6)


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(mode="ct", ct_window=(-160, 240), target_spacing=(2.5, None, None))
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        PreprocessConfig(mode="pet")
    with pytest.raises(ValueError):
        PreprocessConfig(percentiles=(99, 1))
    card = ModelCard(spec=ModelSpec(), preprocessing=cfg.to_dict())
    assert card.preprocess_config == cfg


def test_resample_to_spacing_and_back():
    img = np.random.default_rng(0).random((10, 20, 30)).astype(np.float32)
    up = resample_to_spacing(img, (5.0, 1.0, 1.0), (2.5, None, None))
    assert up.shape == (20, 20, 30)
    back = resample_back(up, img.shape)
    assert back.shape == img.shape
    lab = np.zeros((10, 20, 30), np.uint8)
    lab[3:6, 5:10, 5:10] = 2
    lab_up = resample_to_spacing(lab, (5.0, 1.0, 1.0), (2.5, None, None), order=0)
    assert set(np.unique(lab_up)) == {0, 2}
    np.testing.assert_array_equal(resample_back(lab_up, lab.shape, order=0), lab)


def test_prepare_image_and_label_share_the_grid():
    vol = Volume(_mr(), spacing=(4.0, 1.0, 1.0))
    cfg = PreprocessConfig(mode="mr", target_spacing=(2.0, 1.0, 1.0))
    img = prepare_image(vol, cfg)
    lab = prepare_label(Volume(np.ones(vol.shape, np.uint8), spacing=vol.spacing), cfg)
    assert img.shape == lab.shape == (16, 32, 32) and img.dtype == np.float32 and lab.dtype == np.uint8
    assert prepare_image(vol, PreprocessConfig()).shape == vol.shape  # no target spacing: no resampling
    assert prepare_image(_mr()[0], None).shape == (1, 32, 32)  # a 2D array is one slice


def test_pad_to_multiple_and_crop_back():
    a = np.arange(35 * 51 * 37).reshape(35, 51, 37)
    p, crop = pad_to_multiple(a, 16, axes=(1, 2))
    assert p.shape == (35, 64, 48)
    np.testing.assert_array_equal(p[crop], a)
    same, crop2 = pad_to_multiple(np.zeros((4, 16, 32)), 16, axes=(1, 2))
    assert same.shape == (4, 16, 32) and np.zeros((4, 16, 32))[crop2].shape == (4, 16, 32)


def test_slice_axis_and_stacks():
    assert slice_axis_for_spacing((1.0, 1.0, 1.0)) == 0
    assert slice_axis_for_spacing((0.8, 0.8, 5.0)) == 2
    assert slice_axis_for_spacing((0.7, 3.0, 0.7)) == 1
    vol = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    s = slice_stack(vol, axis=0, context_slices=1)
    assert s.shape == (4, 3, 2, 3)
    np.testing.assert_array_equal(s[0, :, 0, 0], [0, 0, 6])  # edge slice repeated
    np.testing.assert_array_equal(s[2, 1], vol[2])
    s2 = slice_stack(vol, axis=2, context_slices=0, indices=[1])
    assert s2.shape == (1, 1, 4, 2)
    np.testing.assert_array_equal(s2[0, 0], vol[:, :, 1])
