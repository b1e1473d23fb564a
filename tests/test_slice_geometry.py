"""Plane extraction, aspect, radiological layout and orientation letters (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state.geometry import view_to_kji
from desktop_app.state.intensity import (
    CT_PRESETS,
    default_levels,
    drag_levels,
    intensity_stats,
    levels_from_window,
    preset_levels,
    window_from_levels,
)
from desktop_app.viewer.overlay import heat_lut, label_outline, label_rgba, lut_size
from desktop_app.viewer.readout import format_readout, voxel_index
from desktop_app.viewer.slice_geometry import letter_for, plane_geometry, volume_planes, world_axis_assignment
from unet_engine.volume import LPS_TO_RAS, Volume, identity_direction

EXPECTED_LETTERS = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
}


def direction_for_code(code: str) -> np.ndarray:
    """SegLoop (k, j, i) direction for a nibabel orientation code of axes (i, j, k)."""
    ras = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
    cols_ijk = np.array([ras[c] for c in code], dtype=float).T  # RAS columns for i, j, k
    lps = LPS_TO_RAS[:3, :3] @ cols_ijk
    return lps[:, ::-1]  # columns k, j, i


def make_volume(code: str, shape=(6, 7, 8), spacing=(5.0, 0.8, 0.7)) -> Volume:
    arr = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    return Volume(arr, spacing, (10.0, -20.0, 30.0), direction_for_code(code))


@pytest.mark.parametrize("code", ["LPS", "LAS", "RAS", "RPI", "LIP", "ASL"])
def test_letters_are_radiological_whatever_the_file_orientation(code):
    vol = make_volume(code)
    assert vol.orientation_code() == code
    for plane, g in volume_planes(vol).items():
        assert g.letters == EXPECTED_LETTERS[plane], (code, plane)


@pytest.mark.parametrize("code", ["LPS", "LAS", "RAS", "ASL"])
def test_displayed_pixels_sit_where_the_letters_say(code):
    vol = make_volume(code)
    planes = volume_planes(vol)
    world_dir = {"L": (0, +1), "R": (0, -1), "P": (1, +1), "A": (1, -1), "S": (2, +1), "I": (2, -1)}
    for g in planes.values():
        idx = vol.shape[g.axis] // 2
        sl = g.extract(vol.array, idx)
        assert sl.shape == (g.n_rows, g.n_cols)
        assert np.shares_memory(sl, vol.array), "a slice must be a view, not a copy"
        world = lambda r, c: vol.voxel_to_world(np.unravel_index(int(sl[r, c]), vol.shape))  # noqa: E731
        # moving right on screen goes towards the right-edge letter, down towards the bottom one
        w_axis, sign = world_dir[g.letters["right"]]
        assert sign * (world(0, g.n_cols - 1)[w_axis] - world(0, 0)[w_axis]) > 0
        w_axis, sign = world_dir[g.letters["bottom"]]
        assert sign * (world(g.n_rows - 1, 0)[w_axis] - world(0, 0)[w_axis]) > 0


def test_lps_axis_assignment_and_spacing():
    vol = make_volume("LPS", shape=(40, 50, 60), spacing=(5.0, 0.8, 0.7))
    g = volume_planes(vol)
    assert (g["axial"].axis, g["coronal"].axis, g["sagittal"].axis) == (0, 1, 2)
    assert not g["axial"].row_flip and not g["axial"].col_flip
    assert (g["axial"].row_spacing, g["axial"].col_spacing) == (0.8, 0.7)
    assert g["axial"].extent_mm() == pytest.approx((60 * 0.7, 50 * 0.8))
    assert (g["coronal"].n_rows, g["coronal"].n_cols, g["coronal"].row_spacing) == (40, 60, 5.0)
    assert g["coronal"].row_flip  # k increases superiorly -> rows flipped so S is up
    assert g["sagittal"].extent_mm() == pytest.approx((50 * 0.8, 40 * 5.0))


def test_permuted_and_oblique_grids_still_get_three_distinct_views():
    # a sagittal acquisition: array k runs along x, i along y, j along z
    d = np.zeros((3, 3))
    d[:, 0] = (1, 0, 0)
    d[:, 1] = (0, 0, -1)
    d[:, 2] = (0, 1, 0)
    assert world_axis_assignment(d) == (0, 2, 1)
    vol = Volume(np.zeros((9, 10, 11), np.int16), (3.0, 1.0, 1.0), (0, 0, 0), d)
    g = volume_planes(vol)
    assert (g["sagittal"].axis, g["axial"].axis, g["coronal"].axis) == (0, 1, 2)
    for plane, geom in g.items():
        assert geom.letters == EXPECTED_LETTERS[plane]
    # 25 degree oblique rotation about z
    t = np.radians(25)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    vol = Volume(np.zeros((5, 6, 7), np.int16), direction=rot @ identity_direction())
    g = volume_planes(vol)
    assert sorted(x.axis for x in g.values()) == [0, 1, 2]
    assert g["axial"].letters == EXPECTED_LETTERS["axial"]


def test_coordinates_round_trip_and_match_the_tools_convention():
    vol = make_volume("RAS", shape=(6, 7, 8))
    for g in volume_planes(vol).values():
        kji = (2, 3, 4)
        x_mm, y_mm = g.crosshair_mm(kji)
        row, col = y_mm / g.row_spacing, x_mm / g.col_spacing  # pixel centre
        assert g.kji(kji[g.axis], row, col) == pytest.approx(kji)
        axis, index, r, c = g.tool_point(kji[g.axis], row, col)
        assert axis == g.axis and index == kji[g.axis]
        assert view_to_kji(axis, index, r, c) == pytest.approx(kji)
        # anywhere inside the displayed pixel rounds to the same voxel
        near = g.kji(kji[g.axis], row + 0.4, col - 0.4)
        assert tuple(int(np.floor(v + 0.5)) for v in near) == kji
        assert g.slice_in_bbox(kji[g.axis], None)
        bbox = [(0, 6), (0, 7), (0, 8)]
        bbox[g.axis] = (kji[g.axis] + 1, kji[g.axis] + 3)
        assert not g.slice_in_bbox(kji[g.axis], tuple(bbox))


def test_letter_for_and_bad_plane():
    assert letter_for(np.array([0.9, 0.1, 0.2])) == "L"
    assert letter_for(np.array([0.1, -0.9, 0.2])) == "A"
    assert letter_for(np.array([0.1, 0.2, -0.7])) == "I"
    with pytest.raises(ValueError):
        plane_geometry((2, 2, 2), (1, 1, 1), np.eye(3), "oblique")


def test_label_overlay_helpers():
    lab = np.zeros((6, 6), np.uint8)
    lab[1:5, 1:5] = 2
    out = label_outline(lab)
    assert out[1, 1] == 2 and out[1, 3] == 2 and out[2, 2] == 0 and out[0, 0] == 0
    lut = np.zeros((lut_size({2}), 4), np.uint8)
    lut[2] = (0, 255, 0, 255)
    rgba = label_rgba(lab, lut)
    assert rgba.shape == (6, 6, 4) and tuple(rgba[2, 2]) == (0, 255, 0, 255) and rgba[0, 0, 3] == 0
    big = np.array([[300, -1]], dtype=np.int32)  # unknown values: transparent, no crash
    assert label_rgba(big, lut)[..., 3].tolist() == [[0, 0]]
    assert heat_lut()[0, 3] == 0 and heat_lut()[-1, 3] > 0


def test_intensity_presets_and_drag():
    assert CT_PRESETS["Lung"] == (1500.0, -600.0)
    assert levels_from_window(400, 40) == (-160.0, 240.0)
    assert window_from_levels(-160, 240) == (400.0, 40.0)
    rng = np.random.default_rng(0)
    arr = rng.normal(100, 20, (20, 30, 30)).astype(np.float32)
    arr[0, 0, 0] = 1e6  # an outlier must not move Auto
    stats = intensity_stats(arr)
    lo, hi = preset_levels("Auto", stats)
    assert 30 < lo < 60 and 140 < hi < 170
    assert default_levels("CT", stats) == ("Soft tissue", (-160.0, 240.0))
    assert default_levels("MR", stats)[0] == "Auto"
    lo2, hi2 = drag_levels((lo, hi), dx=10, dy=0, scale=1.0)
    assert window_from_levels(lo2, hi2)[0] == pytest.approx(hi - lo + 10)
    lo3, hi3 = drag_levels((lo, hi), dx=0, dy=-5, scale=2.0)  # drag up raises the level
    assert window_from_levels(lo3, hi3)[1] == pytest.approx((lo + hi) / 2 + 10)


def test_readout_text():
    vol = make_volume("LPS")
    mask = np.zeros(vol.shape, np.uint8)
    mask[1, 2, 3] = 1

    class Table(dict):
        pass

    labels = Table({1: type("L", (), {"name": "Spleen"})()})
    text = format_readout(vol, mask, labels, (1, 2, 3))
    x, y, z = vol.voxel_to_world((1, 2, 3))
    assert "Voxel (i, j, k) = (3, 2, 1)" in text
    assert f"LPS = ({x:.1f}, {y:.1f}, {z:.1f}) mm" in text
    assert f"Value {vol.array[1, 2, 3]}" in text and "Label 1: Spleen" in text
    assert voxel_index((0.4, -0.4, 7.49), vol.shape) == (0, 0, 7)
    assert voxel_index((0, 0, 7.6), vol.shape) is None
