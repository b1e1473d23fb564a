"""Shape-based interpolation between drawn slices (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.interpolation import drawn_slices, interpolate_slices
from desktop_app.state.tools import ToolController
from unet_engine.volume import Volume

PLANE = {0: (1, 2), 1: (0, 2), 2: (0, 1)}


def make(shape, spacing):
    doc = Document()
    doc.set_image(Volume(np.zeros(shape, np.int16), spacing=spacing))
    return doc, History(doc)


def disc_mm(shape2d, centre, radius_mm, sampling):
    r, c = np.ogrid[: shape2d[0], : shape2d[1]]
    return ((r - centre[0]) * sampling[0]) ** 2 + ((c - centre[1]) * sampling[1]) ** 2 <= radius_mm**2


def plane_index(axis, s):
    idx = [slice(None)] * 3
    idx[axis] = s
    return tuple(idx)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_circles_grow_linearly_between_key_slices(axis):
    shape = [40, 40, 40]
    shape[axis] = 11
    spacing = [1.0, 1.0, 1.0]
    spacing[axis] = 3.0
    ra, ca = PLANE[axis]
    if axis == 0:
        spacing[ca] = 0.5  # anisotropic in-plane: circles in mm are ellipses in voxels
    doc, hist = make(tuple(shape), tuple(spacing))
    sampling = (spacing[ra], spacing[ca])
    plane_shape = (shape[ra], shape[ca])
    doc.mask[plane_index(axis, 2)][disc_mm(plane_shape, (20, 20), 4.0, sampling)] = 1
    doc.mask[plane_index(axis, 8)][disc_mm(plane_shape, (20, 20), 10.0, sampling)] = 1
    doc.mask[plane_index(axis, 5)][0, 0] = 2  # another label on an intermediate slice
    before = doc.mask.copy()
    bbox = interpolate_slices(doc, hist, 1, axis)
    assert bbox is not None and bbox[axis] == (3, 8)
    px_area = sampling[0] * sampling[1]
    radii = []
    for s in range(3, 8):
        area_mm2 = (doc.mask[plane_index(axis, s)] == 1).sum() * px_area
        radii.append(np.sqrt(area_mm2 / np.pi))
        expected = 4.0 + (s - 2) / 6 * 6.0
        assert abs(radii[-1] - expected) < 0.8, (s, radii[-1], expected)
    assert np.all(np.diff(radii) > 0)
    assert doc.mask[plane_index(axis, 5)][0, 0] == 2  # other labels kept
    # key slices and slices outside the key range untouched
    for s in (0, 1, 2, 8, 9, 10):
        assert np.array_equal(doc.mask[plane_index(axis, s)], before[plane_index(axis, s)])
    assert hist.undo_count == 1 and hist.undo_text == "Undo Interpolate label 1"
    hist.undo()
    assert np.array_equal(doc.mask, before)


def test_several_key_slices_and_shifted_shapes():
    doc, hist = make((12, 30, 30), (2.0, 1.0, 1.0))
    sq = np.zeros((30, 30), bool)
    sq[5:11, 5:11] = True
    doc.mask[0][sq] = 1
    doc.mask[4][np.roll(sq, 4, axis=1)] = 1  # moved right by 4 (overlapping)
    doc.mask[5][sq] = 1  # adjacent key: no gap to fill between 4 and 5
    doc.mask[9][sq] = 1
    assert drawn_slices(doc.mask, 1, 0).tolist() == [0, 4, 5, 9]
    interpolate_slices(doc, hist, 1, 0)
    assert drawn_slices(doc.mask, 1, 0).tolist() == list(range(10))
    centres = [np.argwhere(doc.mask[s] == 1)[:, 1].mean() for s in range(5)]
    assert np.all(np.diff(centres) > 0) and abs(centres[2] - 9.5) < 0.6  # slides across
    assert np.array_equal(doc.mask[7] == 1, sq)  # between two identical squares: the same square
    assert hist.undo_count == 1


def test_nothing_to_interpolate():
    doc, hist = make((6, 10, 10), (1, 1, 1))
    assert interpolate_slices(doc, hist, 1, 0) is None
    doc.mask[2, 3:5, 3:5] = 1
    doc.mask[3, 3:5, 3:5] = 1
    assert interpolate_slices(doc, hist, 1, 0) is None
    assert hist.undo_count == 0


def test_overwrite_other_labels_when_asked():
    doc, hist = make((5, 12, 12), (1, 1, 1))
    doc.mask[0, 2:10, 2:10] = 1
    doc.mask[4, 2:10, 2:10] = 1
    doc.mask[2, 5, 5] = 3
    ToolController(doc, hist).interpolate(0, 1, paint_over="all")
    assert doc.mask[2, 5, 5] == 1 and (doc.mask[1:4, 2:10, 2:10] == 1).all()
