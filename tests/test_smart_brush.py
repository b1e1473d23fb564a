"""Smart brush: paints only voxels similar to and connected to the centre voxel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from desktop_app.state.smart_brush import smart_footprint
from unet_engine.io.volume_io import read_volume

SPLEEN = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _edge_patch(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vals = np.where(np.arange(21)[None, :] < 14, 40.0, 140.0) * np.ones((21, 1))
    return vals + rng.normal(0, 5, vals.shape)


def test_brush_stops_at_an_edge_and_covers_its_own_side():
    vals, foot = _edge_patch(), _disk(10)
    sel = smart_footprint(vals, foot, (10, 10), 0.4)
    assert sel[10, 10]
    assert not sel[:, 14:].any()
    assert sel[foot & (np.arange(21)[None, :] < 14)].mean() > 0.97
    assert not (sel & ~foot).any()


def test_full_tolerance_keeps_nearly_the_whole_footprint_zero_keeps_the_centre():
    vals, foot = _edge_patch(), _disk(10)
    assert smart_footprint(vals, foot, (10, 10), 1.0).sum() >= 0.95 * foot.sum()
    assert smart_footprint(vals, foot, (10, 10), 0.0)[10, 10]


def test_similar_voxels_not_connected_to_the_centre_are_left_out():
    vals = np.full((15, 15), 100.0)
    vals[:, 7] = 0.0  # a dark wall through the brush
    sel = smart_footprint(vals, np.ones((15, 15), bool), (7, 3), 0.3)
    assert sel[:, :7].all() and not sel[:, 7:].any()


def test_intensity_limits_are_respected():
    vals, foot = _edge_patch(), _disk(10)
    sel = smart_footprint(vals, foot, (10, 10), 1.0, intensity_range=(0.0, 60.0))
    assert not sel[vals > 60].any() and sel[10, 10]
    assert not smart_footprint(vals, foot, (10, 10), 0.5, intensity_range=(100.0, 200.0)).any()


def test_centre_outside_the_footprint_gives_nothing_and_bad_shapes_raise():
    foot = _disk(3)
    assert not smart_footprint(np.zeros((7, 7)), foot, (0, 0), 0.5).any()
    with pytest.raises(ValueError, match="same 2D shape"):
        smart_footprint(np.zeros((7, 8)), foot, (3, 3), 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        smart_footprint(np.zeros((7, 7)), foot, (3, 3), 1.5)


def test_on_the_spleen_edge_the_brush_stays_in_the_spleen():
    img = read_volume(SPLEEN / "image.nii.gz").array
    ref = read_volume(SPLEEN / "label.nii.gz").array > 0
    k = int(np.argmax(ref.sum(axis=(1, 2))))
    inner = ref[k] & ~ndimage.binary_erosion(ref[k], iterations=6) & ndimage.binary_erosion(ref[k], iterations=3)
    precisions = []
    for r, c in np.argwhere(inner)[::60]:
        if not (12 <= r < ref.shape[1] - 12 and 12 <= c < ref.shape[2] - 12):
            continue
        box = (slice(r - 12, r + 13), slice(c - 12, c + 13))
        sel = smart_footprint(img[k][box], _disk(12), (12, 12), 0.3)
        precisions.append(ref[k][box][sel].mean())
    assert len(precisions) >= 5
    plain = [ref[k][r - 12:r + 13, c - 12:c + 13][_disk(12)].mean() for r, c in np.argwhere(inner)[::60]
              if 12 <= r < ref.shape[1] - 12 and 12 <= c < ref.shape[2] - 12]
    # a plain 25-voxel brush there is partly outside the spleen
    assert np.mean(precisions) > 0.9 > np.mean(plain) + 0.1
