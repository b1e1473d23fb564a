"""Brush / eraser / threshold paint: exact voxels in each view orientation (no Qt)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.tools import BrushSettings, ToolController
from unet_engine.volume import Volume

PLANE = {0: (1, 2), 1: (0, 2), 2: (0, 1)}


def make(shape=(12, 40, 44), spacing=(5.0, 0.8, 0.8), image=None):
    doc = Document()
    img = image if image is not None else np.zeros(shape, dtype=np.int16)
    doc.set_image(Volume(img, spacing=spacing))
    hist = History(doc)
    return doc, hist, ToolController(doc, hist)


def expected_dab(shape, spacing, axis, slice_index, row, col, *, size, unit, kind, mode):
    """Brute force over every voxel, written from the rules in brush.py's docstring."""
    ra, ca = PLANE[axis]
    centre = np.zeros(3)
    centre[axis], centre[ra], centre[ca] = slice_index, row, col
    out = np.zeros(shape, dtype=bool)
    n = max(1, round(size))
    for v in itertools.product(*(range(s) for s in shape)):
        off = []
        for a in range(3):
            if a == axis and mode == "2d":
                if v[a] != slice_index:
                    break
                continue
            if unit == "mm":
                off.append((v[a] - centre[a]) * spacing[a] / (size / 2))
            else:
                c = centre[a] + (0.5 if n % 2 == 0 else 0.0)
                off.append((v[a] - c) / (n / 2))
        else:
            off = np.array(off)
            inside = (off @ off <= 1 + 1e-9) if kind == "round" else bool(np.all(np.abs(off) <= 1 + 1e-9))
            out[v] = inside
    return out


CASES = [
    # (spacing, axis, size, unit, shape, mode)
    ((5.0, 0.8, 0.8), 0, 5.0, "mm", "round", "2d"),
    ((5.0, 0.8, 0.8), 1, 5.0, "mm", "round", "2d"),
    ((5.0, 0.8, 0.8), 2, 12.0, "mm", "round", "2d"),
    ((2.0, 1.0, 0.5), 0, 6.0, "mm", "round", "2d"),
    ((2.0, 1.0, 0.5), 1, 6.0, "mm", "square", "2d"),
    ((2.0, 1.0, 0.5), 2, 7.0, "mm", "round", "2d"),
    ((5.0, 0.8, 0.8), 0, 5, "voxel", "round", "2d"),
    ((5.0, 0.8, 0.8), 1, 5, "voxel", "round", "2d"),
    ((5.0, 0.8, 0.8), 2, 3, "voxel", "square", "2d"),
    ((5.0, 0.8, 0.8), 0, 4, "voxel", "square", "2d"),
    ((5.0, 0.8, 0.8), 2, 4, "voxel", "round", "2d"),
    ((2.0, 1.0, 0.5), 0, 8.0, "mm", "round", "3d"),
    ((2.0, 1.0, 0.5), 1, 5.0, "mm", "square", "3d"),
    ((2.0, 1.0, 0.5), 2, 3, "voxel", "round", "3d"),
    ((2.0, 1.0, 0.5), 0, 4, "voxel", "square", "3d"),
]


@pytest.mark.parametrize("spacing,axis,size,unit,kind,mode", CASES)
def test_single_dab_exact_voxels(spacing, axis, size, unit, kind, mode):
    shape = (9, 20, 22)
    doc, hist, ctl = make(shape, spacing)
    ctl.brush = BrushSettings(shape=kind, size=size, unit=unit, mode=mode, label=3)
    ra, ca = PLANE[axis]
    s, row, col = 4, shape[ra] // 2, shape[ca] // 2
    changed = []
    doc.mask_changed.connect(changed.append)
    ctl.press(axis, s, row, col)
    assert ctl.release() is True
    want = expected_dab(shape, spacing, axis, s, row, col, size=size, unit=unit, kind=kind, mode=mode)
    got = doc.mask == 3
    assert np.array_equal(got, want), f"painted {got.sum()} voxels, expected {want.sum()}"
    assert set(np.unique(doc.mask).tolist()) == {0, 3}
    # the reported bbox is the tight bbox of the change
    idx = np.argwhere(want)
    assert changed == [tuple((int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))]
    assert hist.undo_count == 1 and hist.undo_text == "Undo Brush stroke"


def test_mm_round_brush_is_elliptical_in_voxels_on_anisotropic_plane():
    # plane j (1.0 mm) x i (0.5 mm): a 6 mm brush spans 7 rows but 13 cols
    doc, _, ctl = make((5, 30, 30), (2.0, 1.0, 0.5))
    ctl.brush = BrushSettings(size=6.0, unit="mm")
    ctl.press(0, 2, 15, 15)
    ctl.release()
    rows = np.flatnonzero(doc.mask[2].any(1))
    cols = np.flatnonzero(doc.mask[2].any(0))
    assert (rows.size, cols.size) == (7, 13)
    fp = ctl.brush.footprint_2d(0, (2.0, 1.0, 0.5))
    assert fp.shape == (7, 13) and np.array_equal(fp, doc.mask[2][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] == 1)


def test_brush_near_edge_is_clipped():
    doc, _, ctl = make((4, 10, 10), (1, 1, 1))
    ctl.brush = BrushSettings(size=5, shape="square")
    ctl.press(0, 0, 0, 9)
    ctl.release()
    assert np.array_equal(np.argwhere(doc.mask[0]).min(0), [0, 7]) and doc.mask.sum() == 3 * 3


def test_stroke_interpolates_fast_moves_without_gaps_and_is_one_entry():
    doc, hist, ctl = make((3, 60, 60), (1, 1, 1))
    ctl.brush = BrushSettings(size=1)
    ctl.press(0, 1, 5, 5)
    ctl.move(0, 1, 5, 50)  # one jump of 45 voxels
    ctl.move(0, 1, 40, 20)  # a diagonal jump
    ctl.release()
    m = doc.mask[1] == 1
    assert m[5, 5:51].all()
    lab, n = ndimage.label(m, structure=np.ones((3, 3)))
    assert n == 1  # 8-connected: no gaps
    assert all(m[r].any() for r in range(5, 41))
    assert hist.undo_count == 1
    hist.undo()
    assert not doc.mask.any()


def test_round_stroke_is_the_swept_disc():
    spacing = (3.0, 0.8, 0.5)
    doc, _, ctl = make((3, 50, 60), spacing)
    ctl.brush = BrushSettings(size=4.0, unit="mm")
    p0, p1 = np.array([10.0, 10.0]), np.array([35.0, 48.0])
    ctl.press(0, 1, *p0)
    ctl.move(0, 1, *p1)
    ctl.release()
    rr, cc = np.mgrid[0:50, 0:60]
    sc = np.array([0.8, 0.5])
    q = np.stack([rr, cc], -1) * sc
    a, b = p0 * sc, p1 * sc
    t = np.clip(((q - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(q - (a + t[..., None] * (b - a)), axis=-1)
    assert np.array_equal(doc.mask[1] == 1, dist <= 2.0 + 1e-9)


def test_square_stroke_is_the_swept_box():
    doc, _, ctl = make((3, 40, 40), (1, 1, 1))
    ctl.brush = BrushSettings(size=3, shape="square")
    ctl.press(0, 1, 5, 5)
    ctl.move(0, 1, 25, 15)
    ctl.release()
    m = doc.mask[1] == 1
    # every stamp at the integer points of the line is inside, nothing beyond the hull
    for t in np.linspace(0, 1, 41):
        r, c = 5 + 20 * t, 5 + 10 * t
        assert m[int(round(r)), int(round(c))]
    rows, cols = np.nonzero(m)
    assert rows.min() == 4 and rows.max() == 26 and cols.min() == 4 and cols.max() == 16
    # the box corners far from the line are not painted
    assert not m[4, 16] and not m[26, 4]


def test_moving_to_another_slice_does_not_join_across_slices():
    doc, _, ctl = make((6, 20, 20), (1, 1, 1))
    ctl.brush = BrushSettings(size=1)
    ctl.press(0, 1, 5, 5)
    ctl.move(0, 4, 5, 15)
    ctl.release()
    assert doc.mask[1].sum() == 1 and doc.mask[4].sum() == 1 and doc.mask.sum() == 2


def _prefilled():
    doc, hist, ctl = make((3, 20, 20), (1, 1, 1))
    doc.mask[1, :, :10] = 2
    doc.mask[1, :3, :] = 5
    return doc, hist, ctl


@pytest.mark.parametrize("rule", ["all", "empty", "label"])
def test_paint_over_rules(rule):
    doc, _, ctl = _prefilled()
    before = doc.mask.copy()
    ctl.brush = BrushSettings(size=9, shape="square", label=1, paint_over=rule, paint_over_label=2)
    ctl.press(0, 1, 6, 10)
    ctl.release()
    box = np.zeros_like(before, dtype=bool)
    box[1, 2:11, 6:15] = True
    if rule == "all":
        allowed = box
    elif rule == "empty":
        allowed = box & (before == 0)
    else:
        allowed = box & (before == 2)
    want = np.where(allowed, 1, before)
    assert np.array_equal(doc.mask, want)


@pytest.mark.parametrize("rule", ["all", "empty", "label"])
def test_eraser_rules(rule):
    doc, hist, ctl = _prefilled()
    before = doc.mask.copy()
    ctl.tool = "eraser"
    ctl.brush = BrushSettings(size=9, shape="square", label=5, paint_over=rule, paint_over_label=2)
    ctl.press(0, 1, 6, 10)
    ctl.release()
    box = np.zeros_like(before, dtype=bool)
    box[1, 2:11, 6:15] = True
    if rule == "all":
        allowed = box
    elif rule == "empty":  # protects other labels: erases only the active label (5)
        allowed = box & (before == 5)
    else:
        allowed = box & (before == 2)
    assert np.array_equal(doc.mask, np.where(allowed, 0, before))
    assert hist.undo_text == "Undo Eraser stroke"


def test_right_button_erase_with_brush_tool():
    doc, _, ctl = _prefilled()
    ctl.brush = BrushSettings(size=1)
    ctl.press(0, 1, 0, 0, erase=True)
    ctl.release()
    assert doc.mask[1, 0, 0] == 0 and doc.mask[1, 0, 1] == 5


def test_threshold_paint_only_in_window():
    img = np.tile(np.arange(30, dtype=np.int16) * 10, (3, 30, 1))  # intensity = 10 * i
    doc, _, ctl = make(image=img, spacing=(1, 1, 1))
    ctl.brush = BrushSettings(size=21, shape="square", threshold=(80, 150))
    ctl.press(0, 1, 15, 15)
    ctl.release()
    painted = np.argwhere(doc.mask[1])
    assert painted[:, 1].min() == 8 and painted[:, 1].max() == 15  # i in 8..15 only
    assert doc.mask[1, 5:26, 8:16].all() and doc.mask.sum() == 21 * 8


def test_threshold_paint_in_coronal_view_3d():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 100, size=(10, 12, 14)).astype(np.float32)
    doc, _, ctl = make(image=img, spacing=(2.0, 1.0, 1.0))
    ctl.brush = BrushSettings(size=6.0, unit="mm", mode="3d", threshold=(20, 60), label=2)
    ctl.press(1, 6, 5, 7)
    ctl.release()
    fp = expected_dab(img.shape, (2.0, 1.0, 1.0), 1, 6, 5, 7, size=6.0, unit="mm", kind="round", mode="3d")
    assert np.array_equal(doc.mask == 2, fp & (img >= 20) & (img <= 60))


def test_cancel_restores():
    doc, hist, ctl = _prefilled()
    before = doc.mask.copy()
    ctl.brush = BrushSettings(size=7)
    ctl.press(0, 1, 5, 5)
    ctl.move(0, 1, 15, 15)
    ctl.cancel()
    assert np.array_equal(doc.mask, before) and hist.undo_count == 0


def test_click_without_change_makes_no_entry():
    doc, hist, ctl = make((3, 10, 10), (1, 1, 1))
    ctl.tool = "eraser"
    ctl.press(0, 1, 5, 5)
    assert ctl.release() is False and hist.undo_count == 0 and not doc.dirty


def test_invalid_settings_rejected():
    doc, _, ctl = make((3, 10, 10), (1, 1, 1))
    ctl.brush = BrushSettings(shape="hexagon")
    with pytest.raises(ValueError):
        ctl.press(0, 1, 5, 5)
    ctl.brush = BrushSettings(label=300)
    with pytest.raises(ValueError):
        ctl.press(0, 1, 5, 5)
    with pytest.raises(ValueError):
        ctl.tool = "magic_wand"


@pytest.mark.parametrize("size,unit", [(1, "voxel"), (4, "voxel"), (5, "voxel"), (6, "voxel"), (3.7, "mm"), (9.0, "mm")])
def test_footprint_preview_matches_a_dab(size, unit):
    spacing = (2.0, 1.0, 0.5)
    doc, _, ctl = make((3, 40, 40), spacing)
    ctl.brush = BrushSettings(size=size, unit=unit)
    ctl.press(0, 1, 20, 20)
    ctl.release()
    fp = ctl.brush.footprint_2d(0, spacing)
    r0, c0 = 20 - (fp.shape[0] - 1) // 2, 20 - (fp.shape[1] - 1) // 2
    want = np.zeros((40, 40), bool)
    want[r0:r0 + fp.shape[0], c0:c0 + fp.shape[1]] = fp
    assert np.array_equal(doc.mask[1] == 1, want)
