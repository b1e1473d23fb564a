"""Click to segment: region grown from a click on the spleen CT and synthetic phantoms; bad clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from desktop_app.state.region_click import ClickError, region_from_click
from unet_engine.io.volume_io import read_volume

SPLEEN = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"


@pytest.fixture(scope="module")
def spleen():
    v = read_volume(SPLEEN / "image.nii.gz")
    ref = read_volume(SPLEEN / "label.nii.gz").array > 0
    dt = ndimage.distance_transform_edt(ref, sampling=v.spacing)
    centre = tuple(int(x) for x in np.unravel_index(int(np.argmax(dt)), ref.shape))
    return v.array, v.spacing, ref, centre


def _dice(box, sel, ref):
    full = np.zeros(ref.shape, bool)
    full[tuple(slice(a, b) for a, b in box)] = sel
    return 2 * (full & ref).sum() / (full.sum() + ref.sum())


def _body_phantom(shape=(12, 80, 80)) -> np.ndarray:
    """Air around a soft-tissue body holding a brighter organ, with noise."""
    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    vol = np.full(shape, -1000.0, np.float32)
    body = ((j - 40) / 30.0) ** 2 + ((i - 40) / 30.0) ** 2 < 1
    vol[np.broadcast_to(body, shape)] = 40
    organ = ((k - 6) / 5.0) ** 2 + ((j - 40) / 12.0) ** 2 + ((i - 40) / 12.0) ** 2 < 1
    vol[organ] = 120
    return vol + rng.normal(0, 8, shape).astype(np.float32)


def test_2d_click_in_the_spleen_gives_the_spleen_slice(spleen):
    img, spacing, ref, c = spleen
    box, sel = region_from_click(img, c, spacing, mode="2d", axis=0)
    assert box[0] == (c[0], c[0] + 1) and sel.shape == tuple(b - a for a, b in box) and sel.dtype == bool
    ref_slice = ref[c[0]][tuple(slice(a, b) for a, b in box[1:])]
    assert 2 * (sel[0] & ref_slice).sum() / (sel.sum() + ref[c[0]].sum()) > 0.93


def test_3d_click_in_the_spleen_grows_the_spleen(spleen):
    img, spacing, ref, c = spleen
    box, sel = region_from_click(img, c, spacing, mode="3d")
    assert _dice(box, sel, ref) > 0.9
    assert sel[tuple(x - a for x, (a, _) in zip(c, box))]


def test_other_views_use_their_own_slice(spleen):
    img, spacing, ref, c = spleen
    box, sel = region_from_click(img, c, spacing, tolerance=0.3, mode="2d", axis=2)
    assert box[2] == (c[2], c[2] + 1) and sel.shape[2] == 1 and sel.sum() > 100


def test_click_outside_the_scan_is_refused(spleen):
    img, spacing, _, _ = spleen
    for kji in [(-1, 5, 5), (5, 500, 5), (5, 5, img.shape[2])]:
        with pytest.raises(ClickError, match="outside the scan"):
            region_from_click(img, kji, spacing)


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_click_on_air_leaks_and_is_refused(mode):
    vol = _body_phantom()
    with pytest.raises(ClickError, match="leaked.*lower the tolerance"):
        region_from_click(vol, (6, 2, 2), (3.0, 1.0, 1.0), tolerance=0.5, mode=mode)
    box, sel = region_from_click(vol, (6, 40, 40), (3.0, 1.0, 1.0), mode=mode)
    assert sel.sum() > 100  # the organ works on the same phantom


def test_intensity_limits_bound_the_region_and_refuse_a_click_outside_them(spleen):
    img, spacing, _, c = spleen
    lo, hi = float(img[c]) - 20, float(img[c]) + 20
    box, sel = region_from_click(img, c, spacing, tolerance=1.0, mode="2d", intensity_range=(lo, hi))
    vals = img[tuple(slice(a, b) for a, b in box)][sel]
    assert vals.min() >= lo and vals.max() <= hi
    with pytest.raises(ClickError, match="outside the intensity limits"):
        region_from_click(img, c, spacing, intensity_range=(hi + 1, hi + 100))


def test_huge_volume_works_on_a_capped_box_around_the_click():
    j, i = np.ogrid[:3000, :3000]
    disk = np.where((j - 1500) ** 2 + (i - 1500) ** 2 < 15 ** 2, 100.0, 0.0).astype(np.float32)
    big = np.broadcast_to(disk, (3000, 3000, 3000))  # a 27e9-voxel cylinder, never allocated
    box, sel = region_from_click(big, (1500, 1500, 1500), (1.0, 1.0, 1.0), mode="3d", max_voxels=200_000)
    n = int(np.prod([b - a for a, b in box]))
    assert n <= 200_000 and sel.shape == tuple(b - a for a, b in box)
    assert all(a <= 1500 < b for a, b in box)
    assert sel[:, 25, 25].all() and not sel[:, 0, 0].any()


def test_one_slice_volume_and_anisotropic_spacing():
    vol = _body_phantom((1, 80, 80))
    vol[0, 30:50, 30:50] += 80
    for mode in ("2d", "3d"):
        box, sel = region_from_click(vol, (0, 40, 40), (5.0, 0.7, 0.7), mode=mode)
        assert sel.shape[0] == 1 and 300 < sel.sum() <= 480


def test_bad_arguments_raise_value_error(spleen):
    img, spacing, _, c = spleen
    with pytest.raises(ValueError, match="mode"):
        region_from_click(img, c, spacing, mode="4d")
    with pytest.raises(ValueError, match="tolerance"):
        region_from_click(img, c, spacing, tolerance=2.0)
