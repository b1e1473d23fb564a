"""Lasso / polygon selection: voxel-centre rule, even-odd self-crossing, clipping, bad outlines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage import measure

from desktop_app.state.lasso import LassoError, polygon_selection
from unet_engine.io.volume_io import read_volume

SPLEEN = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"


def test_square_selects_centres_inside_and_on_the_outline():
    sel = polygon_selection((6, 7), [(1, 1), (1, 4), (3, 4), (3, 1)])
    expected = np.zeros((6, 7), bool)
    expected[1:4, 1:5] = True
    assert np.array_equal(sel, expected)


def test_half_voxel_outline_covers_only_centres_inside():
    sel = polygon_selection((5, 5), [(0.6, 0.6), (0.6, 2.4), (2.4, 2.4), (2.4, 0.6)])
    assert np.argwhere(sel).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_self_crossing_outline_uses_even_odd_rule():
    star = [(20 + 15 * math.sin(4 * math.pi * t / 5), 20 - 15 * math.cos(4 * math.pi * t / 5)) for t in range(5)]
    sel = polygon_selection((41, 41), star)
    assert not sel[20, 20]  # the doubly-enclosed pentagon in the middle
    assert sel[20, 8] and sel[13, 30]  # two points of the star
    bowtie = polygon_selection((20, 20), [(2, 2), (2, 17), (17, 2), (17, 17)])  # figure eight
    assert bowtie[3, 9] and bowtie[16, 9] and not bowtie[9, 3]


def test_points_outside_the_slice_are_clipped_without_changing_the_shape():
    pts = [(-10.0, -5.0), (-10.0, 30.0), (25.0, 12.0)]
    big = np.zeros((60, 60), bool)
    from skimage.draw import polygon
    rr, cc = polygon(np.array([p[0] for p in pts]) + 20, np.array([p[1] for p in pts]) + 20, big.shape)
    big[rr, cc] = True
    sel = polygon_selection((15, 20), pts)
    assert sel.shape == (15, 20)
    assert np.array_equal(sel, big[20:35, 20:40])
    assert not polygon_selection((10, 10), [(20, 20), (20, 30), (30, 25)]).any()  # all outside: empty


@pytest.mark.parametrize("points, what", [
    ([], "0 distinct"),
    ([(1, 1), (5, 5)], "2 distinct"),
    ([(1, 1), (5, 5), (5, 5), (1, 1)], "2 distinct"),
    ([(1, 1), (2, 2), (3, 3), (4, 4)], "no area"),
    ([(1, 1), (np.nan, 2), (3, 1)], "not finite"),
])
def test_bad_outlines_raise_lasso_error(points, what):
    with pytest.raises(LassoError, match=what):
        polygon_selection((10, 10), points)


def test_lasso_along_the_spleen_outline_reproduces_the_slice():
    ref = read_volume(SPLEEN / "label.nii.gz").array > 0
    k = int(np.argmax(ref.sum(axis=(1, 2))))
    sl = ref[k]
    contour = max(measure.find_contours(np.pad(sl, 1).astype(float), 0.5), key=len) - 1
    sel = polygon_selection(sl.shape, [tuple(p) for p in contour])
    dice = 2 * (sel & sl).sum() / (sel.sum() + sl.sum())
    assert dice > 0.97


def test_long_mouse_outline_matches_the_exact_polygon_to_a_tenth_of_a_voxel():
    from skimage.draw import polygon

    ang = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    pts = np.c_[60 + 40 * np.sin(ang), 70 + 55 * np.cos(3 * ang) * 0.3 + 55 * np.cos(ang)]
    exact = np.zeros((130, 150), bool)
    rr, cc = polygon(pts[:, 0], pts[:, 1], exact.shape)
    exact[rr, cc] = True
    sel = polygon_selection(exact.shape, [tuple(p) for p in pts])
    assert (sel ^ exact).sum() <= 0.002 * exact.sum()
