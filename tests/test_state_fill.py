"""Flood fill and fill holes (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state.document import Document
from desktop_app.state.fill import fill_holes, flood_fill
from desktop_app.state.history import History
from desktop_app.state.tools import BrushSettings, ToolController
from unet_engine.volume import Volume


def make(shape=(5, 20, 20), spacing=(2.0, 1.0, 1.0), image=None):
    doc = Document()
    doc.set_image(Volume(image if image is not None else np.zeros(shape, np.int16), spacing=spacing))
    hist = History(doc)
    return doc, hist, ToolController(doc, hist)


def ring(mask2d, r0, r1, c0, c1, value, gap=False):
    mask2d[r0, c0:c1 + 1] = value
    mask2d[r1, c0:c1 + 1] = value
    mask2d[r0:r1 + 1, c0] = value
    mask2d[r0:r1 + 1, c1] = value
    if gap:
        mask2d[r0, (c0 + c1) // 2] = 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_fill_closed_region_in_each_view(axis):
    doc, hist, ctl = make((20, 20, 20), (3.0, 1.0, 0.7))
    plane = [slice(None)] * 3
    plane[axis] = 7
    view = doc.mask[tuple(plane)]  # a view into the mask: drawing into it draws the slice
    ring(view, 4, 12, 5, 15, 1)
    before = doc.mask.copy()
    ctl.tool = "fill"
    ctl.brush.label = 2
    bbox = ctl.press(axis, 7, 8, 10)
    ctl.release()
    inside = np.zeros((20, 20), bool)
    inside[5:12, 6:15] = True
    want = before.copy()
    want[tuple(plane)][inside] = 2
    assert np.array_equal(doc.mask, want)
    b = [(0, 20)] * 3
    b[axis] = (7, 8)
    rows, cols = [a for a in range(3) if a != axis]
    b[rows], b[cols] = (5, 12), (6, 15)
    assert bbox == tuple(b)
    assert hist.undo_count == 1 and hist.undo_text == "Undo Fill"
    hist.undo()
    assert np.array_equal(doc.mask, before)


def test_fill_leaks_through_a_gap():
    doc, hist, _ = make()
    ring(doc.mask[2], 4, 12, 5, 15, 1, gap=True)
    flood_fill(doc, hist, 0, 2, 8, 10, 2)
    sl = doc.mask[2]
    assert sl[0, 0] == 2 and sl[19, 19] == 2 and sl[8, 10] == 2  # outside filled too
    assert (sl == 1).sum() == 2 * 11 + 2 * 7 - 1  # the ring itself untouched
    assert not doc.mask[1].any() and not doc.mask[3].any()  # 2D: other slices untouched


def test_fill_is_four_connected():
    doc, hist, _ = make()
    # a diagonal wall: 8-connected, so it still closes the region under 4-connectivity
    for r in range(20):
        doc.mask[2, r, r] = 1
    flood_fill(doc, hist, 0, 2, 15, 2, 3)
    sl = doc.mask[2]
    assert (sl == 3).sum() == sum(range(20)) and sl[2, 15] == 0


def test_fill_replaces_a_labelled_region_and_respects_paint_over():
    doc, hist, _ = make()
    doc.mask[2, 2:6, 2:6] = 4
    assert flood_fill(doc, hist, 0, 2, 3, 3, 1, paint_over="empty") is None
    assert flood_fill(doc, hist, 0, 2, 3, 3, 1, paint_over="label", paint_over_label=2) is None
    assert flood_fill(doc, hist, 0, 2, 3, 3, 1, paint_over="label", paint_over_label=4) is not None
    assert (doc.mask == 1).sum() == 16 and hist.undo_count == 1
    assert flood_fill(doc, hist, 0, 2, 3, 3, 1) is None  # already that value


def test_fill_intensity_bounded():
    img = np.zeros((5, 20, 20), np.float32)
    img[:, :, 10:] = 100.0  # right half bright
    doc, hist, ctl = make(image=img)
    ctl.tool = "fill"
    ctl.brush = BrushSettings(label=1, threshold=(50, 150))
    ctl.press(0, 2, 5, 15)
    assert (doc.mask[2, :, 10:] == 1).all() and not doc.mask[2, :, :10].any()
    assert ctl.press(0, 2, 5, 5) is None  # seed outside the window


def test_fill_outside_volume_is_noop():
    doc, hist, _ = make()
    assert flood_fill(doc, hist, 0, 2, 40, 3, 1) is None and hist.undo_count == 0


def _hollow_ball(shape=(15, 15, 15)):
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = np.sqrt((k - 7) ** 2 + (j - 7) ** 2 + (i - 7) ** 2)
    return (d <= 6) & (d > 3), d <= 3


def test_fill_holes_3d():
    doc, hist, _ = make((15, 15, 15), (1, 1, 1))
    shell, cavity = _hollow_ball()
    doc.mask[shell] = 1
    doc.mask[7, 7, 7] = 2  # another label inside is kept by default
    bbox = fill_holes(doc, hist, 1)
    assert bbox is not None
    assert (doc.mask[cavity] == 1).sum() == cavity.sum() - 1 and doc.mask[7, 7, 7] == 2
    assert hist.undo_count == 1 and hist.undo_text == "Undo Fill holes in label 1"
    hist.undo()
    fill_holes(doc, hist, 1, paint_over="all")
    assert (doc.mask[cavity] == 1).all()


def test_fill_holes_2d_per_slice():
    doc, hist, _ = make((6, 20, 20), (1, 1, 1))
    # a tube along k: open at both ends in 3D, closed ring in every axial slice
    for k in range(6):
        ring(doc.mask[k], 4, 12, 5, 15, 1)
    assert fill_holes(doc, hist, 1, mode="3d") is None  # no enclosed cavity in 3D
    fill_holes(doc, hist, 1, mode="2d", axis=0)
    assert (doc.mask[:, 5:12, 6:15] == 1).all()
    hist.undo()
    # along i (sagittal slices) the tube's cross-sections are not closed
    assert fill_holes(doc, hist, 1, mode="2d", axis=2) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_fill_holes_equals_scipy(seed):
    from scipy import ndimage

    from desktop_app.state.fill import binary_fill_holes

    rng = np.random.default_rng(seed)
    b3 = ndimage.binary_dilation(rng.random((14, 16, 18)) < 0.25, iterations=1)
    b2 = rng.random((30, 25)) < 0.55
    for b in (b3, b2, np.zeros((4, 5), bool), np.ones((3, 4, 5), bool)):
        assert np.array_equal(binary_fill_holes(b), ndimage.binary_fill_holes(b))
