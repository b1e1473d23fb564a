"""Grow from seeds: region competition on the spleen CT and synthetic shapes; bad seeds; cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from desktop_app.state.grow_seeds import BACKGROUND, GrowCancelled, GrowResult, SeedError, SeedGrower
from unet_engine.io.volume_io import read_volume

SPLEEN = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"


def _pts(k: int, plane: np.ndarray) -> np.ndarray:
    rc = np.argwhere(plane)
    return np.c_[np.full(len(rc), k), rc]


def _line(shape, r, c0, c1) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[r, c0:c1] = True
    return out


@pytest.fixture(scope="module")
def spleen():
    v = read_volume(SPLEEN / "image.nii.gz")
    ref = read_volume(SPLEEN / "label.nii.gz").array > 0
    return v.array, v.spacing, ref


def _spleen_seeds(ref: np.ndarray, slices) -> dict[int, np.ndarray]:
    """A short stroke inside the spleen and a loop 4 voxels outside it, on a few slices."""
    fg, bg = [], []
    for k in slices:
        inner = ndimage.binary_erosion(ref[k], iterations=4)
        r = int(np.median(np.nonzero(inner)[0]))
        fg.append(_pts(k, inner & _line(ref[k].shape, r, 0, ref.shape[2])))
        ring = ndimage.binary_dilation(ref[k], iterations=5) & ~ndimage.binary_dilation(ref[k], iterations=4)
        bg.append(_pts(k, ring))
    return {1: np.concatenate(fg), BACKGROUND: np.concatenate(bg)}


def _paste(shape, res: GrowResult) -> np.ndarray:
    out = np.zeros(shape, res.labels.dtype)
    out[tuple(slice(a, b) for a, b in res.bbox)] = res.labels
    return out


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _two_balls(shape=(30, 60, 60)):
    rng = np.random.default_rng(1)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    a = ((k - 15) / 8.0) ** 2 + ((j - 30) / 12.0) ** 2 + ((i - 18) / 12.0) ** 2 < 1
    b = ((k - 15) / 8.0) ** 2 + ((j - 30) / 12.0) ** 2 + ((i - 44) / 11.0) ** 2 < 1
    vol = np.full(shape, 20.0, np.float32)
    vol[a], vol[b] = 100.0, 180.0
    return vol + rng.normal(0, 6, shape).astype(np.float32), a, b


def test_spleen_from_strokes_on_three_slices(spleen):
    img, spacing, ref = spleen
    grower = SeedGrower(img, spacing)
    res = grower.grow(_spleen_seeds(ref, [5, 10, 15]))
    assert res.labels.shape == tuple(b - a for a, b in res.bbox) and res.seconds >= 0
    assert _dice(_paste(ref.shape, res) == 1, ref) > 0.85


def test_several_labels_grow_at_once_with_anisotropic_spacing():
    vol, a, b = _two_balls()
    seeds = {1: _pts(15, _line(a.shape[1:], 30, 14, 22)), 2: _pts(15, _line(a.shape[1:], 30, 40, 48)),
             BACKGROUND: _pts(15, _line(a.shape[1:], 5, 5, 55))}
    res = SeedGrower(vol, (3.0, 1.0, 1.0), margin_mm=60).grow(seeds)
    lab = _paste(a.shape, res)
    assert _dice(lab == 1, a) > 0.9 and _dice(lab == 2, b) > 0.9
    # two labels compete without any background seed
    res2 = SeedGrower(vol, (3.0, 1.0, 1.0), margin_mm=60).grow({1: seeds[1], 2: seeds[2]})
    assert set(np.unique(res2.labels)) == {1, 2}


def test_voxels_outside_the_intensity_limits_are_never_labelled(spleen):
    img, spacing, ref = spleen
    lo, hi = 0.0, 200.0
    res = SeedGrower(img, spacing, intensity_range=(lo, hi)).grow(_spleen_seeds(ref, [8, 12]))
    crop = img[tuple(slice(a, b) for a, b in res.bbox)]
    assert not res.labels[(crop < lo) | (crop > hi)].any()
    assert (res.labels == 1).sum() > 10_000


def test_a_new_stroke_inside_the_box_reuses_the_cache_and_matches_a_fresh_grow(spleen):
    img, spacing, ref = spleen
    grower = SeedGrower(img, spacing, work_voxels=150_000)
    seeds = _spleen_seeds(ref, [6, 10, 14])
    first = grower.grow(seeds)
    assert not first.reused_cache and first.shrink != (1, 1, 1)
    more = dict(seeds)
    more[1] = np.concatenate([seeds[1], _spleen_seeds(ref, [12])[1]])
    second = grower.grow(more)
    assert second.reused_cache and second.bbox == first.bbox
    fresh = SeedGrower(img, spacing, work_voxels=150_000).grow(more)
    assert np.array_equal(fresh.labels, second.labels)


def test_full_resolution_when_asked(spleen):
    img, spacing, ref = spleen
    res = SeedGrower(img, spacing, work_voxels=None).grow(_spleen_seeds(ref, [10]))
    assert res.shrink == (1, 1, 1)


@pytest.mark.parametrize("seeds, message", [
    ({}, "no seeds"),
    ({1: np.zeros((0, 3), int), BACKGROUND: []}, "no seeds"),
    ({1: np.array([[5, 50, 50], [5, 51, 50]])}, r"only label 1 has seeds: paint background seeds too \(Shift\+drag\)"),
    ({BACKGROUND: np.array([[5, 50, 50]])}, "only background has seeds"),
    ({1: np.array([[5, 50, 50]]), BACKGROUND: np.array([[5, 50, 500]])}, "outside the scan"),
    ({1: np.array([[-1, 50, 50]]), BACKGROUND: np.array([[5, 5, 5]])}, "outside the scan"),
    ({-2: np.array([[1, 50, 50]]), BACKGROUND: np.array([[5, 5, 5]])}, "negative"),
])
def test_bad_seeds_raise_seed_error(spleen, seeds, message):
    img, spacing, _ = spleen
    with pytest.raises(SeedError, match=message):
        SeedGrower(img, spacing).grow(seeds)


def test_seeds_all_outside_the_intensity_limits(spleen):
    img, spacing, ref = spleen
    with pytest.raises(SeedError, match="inside the intensity limits"):
        SeedGrower(img, spacing, intensity_range=(5000.0, 6000.0)).grow(_spleen_seeds(ref, [10]))


def test_a_box_over_max_voxels_is_refused_with_a_message(spleen):
    img, spacing, ref = spleen
    with pytest.raises(SeedError, match="more than the limit"):
        SeedGrower(img, spacing, max_voxels=10_000).grow(_spleen_seeds(ref, [10]))


@pytest.mark.parametrize("after_calls", [0, 3, 8])
def test_cancel_raises_and_leaves_everything_as_it_was(spleen, after_calls):
    img, spacing, ref = spleen
    before = img.copy()
    grower = SeedGrower(img, spacing, work_voxels=None)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > after_calls

    seeds = _spleen_seeds(ref, [10])
    with pytest.raises(GrowCancelled):
        grower.grow(seeds, cancel)
    assert np.array_equal(img, before)
    res = grower.grow(seeds)  # the grower still works after a cancel
    assert (res.labels == 1).sum() > 1000


def test_one_slice_volume_works():
    vol, a, _ = _two_balls((1, 60, 60))
    vol[0, 20:40, 10:26] = 100.0
    vol[0, 20:40, 34:50] = 180.0
    seeds = {1: np.array([[0, 30, 18]]), 2: np.array([[0, 30, 42]]), BACKGROUND: np.array([[0, 5, 5], [0, 55, 30]])}
    res = SeedGrower(vol, (5.0, 0.7, 0.7), margin_mm=50).grow(seeds)
    lab = _paste(vol.shape, res)
    assert lab.shape[0] == 1
    assert (lab[0, 22:38, 12:24] == 1).all() and (lab[0, 22:38, 36:48] == 2).all()
    assert (lab[0, :15] == 0).all()
