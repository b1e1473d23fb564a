"""The interactive tools' state (no Qt): seed strokes, the preview, accept as one undo step,
discard, lasso strokes, smart brush strokes, click requests."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.lasso import LassoError
from desktop_app.state.preview import BACKGROUND_SEED
from desktop_app.state.tools import ClickRequest, ToolController
from unet_engine.volume import Volume


def make(shape=(6, 30, 40), spacing=(2.0, 1.0, 1.0), image=None):
    doc = Document()
    doc.set_image(Volume(image if image is not None else np.zeros(shape, np.int16), spacing=spacing))
    hist = History(doc)
    return doc, hist, ToolController(doc, hist)


def test_seed_stroke_records_the_brush_footprint_without_touching_the_mask():
    doc, hist, ctl = make()
    ctl.tool = "seeds"
    ctl.brush.size, ctl.brush.label = 3, 2
    grown = []
    ctl.requested.connect(lambda kind, payload: grown.append(kind))
    ctl.press(0, 3, 10, 10)
    ctl.move(0, 3, 10, 20)
    assert ctl.release() is False  # not a mask edit
    assert not doc.mask.any() and not hist.can_undo()
    assert grown == ["grow"]
    seeds = ctl.preview.seeds()
    assert set(seeds) == {2}
    pts = seeds[2]
    assert set(pts[:, 0]) == {3}  # 2D brush: this slice only
    assert pts[:, 2].min() == 9 and pts[:, 2].max() == 21 and set(pts[:, 1]) == {9, 10, 11}
    # Shift + drag: background seeds; a voxel seeded twice keeps its latest label
    ctl.press(0, 3, 10, 10, erase=True)
    ctl.release()
    seeds = ctl.preview.seeds()
    assert set(seeds) == {2, BACKGROUND_SEED}
    assert [3, 10, 10] in seeds[BACKGROUND_SEED].tolist() and [3, 10, 10] not in seeds[2].tolist()


def test_seed_stroke_cancel_removes_only_that_stroke():
    doc, hist, ctl = make()
    ctl.tool = "seeds"
    ctl.press(0, 2, 5, 5)
    ctl.release()
    ctl.press(0, 2, 20, 20, erase=True)
    ctl.move(0, 2, 20, 30)
    ctl.cancel()
    assert set(ctl.preview.seeds()) == {1}


def test_seeds_respect_the_intensity_limits():
    img = np.zeros((3, 20, 20), np.int16)
    img[:, :, 10:] = 100
    doc, hist, ctl = make(image=img)
    ctl.tool = "seeds"
    ctl.brush.size, ctl.brush.threshold = 7, (50, 150)
    ctl.press(1, 10, 1, 10)
    ctl.release()
    pts = ctl.preview.seeds()[1]
    assert (pts[:, 2] >= 10).all()


def test_accept_writes_all_labels_as_one_undo_step_and_honours_paint_over():
    doc, hist, ctl = make()
    doc.mask[2, 0:5, 0:5] = 3  # an existing structure
    before = doc.mask.copy()
    proposal = np.zeros((1, 10, 10), np.int64)
    proposal[0, :5, :5] = 1  # over the existing label 3
    proposal[0, 5:, 5:] = 2
    ctl.preview.set_result(((2, 3), (0, 10), (0, 10)), proposal, "Grow from seeds", "seeds")
    ctl.brush.paint_over = "empty"
    bbox = ctl.apply_patch(ctl.accept_job()())
    assert bbox == ((2, 3), (5, 10), (5, 10))
    assert (doc.mask[2, 5:10, 5:10] == 2).all() and (doc.mask[2, :5, :5] == 3).all()
    assert 2 in doc.labels and hist.undo_text.endswith("Grow from seeds")
    assert hist.undo() and np.array_equal(doc.mask, before)
    # "all": the proposal replaces the existing label too
    ctl.brush.paint_over = "all"
    ctl.apply_patch(ctl.accept_job()())
    assert (doc.mask[2, :5, :5] == 1).all()


def test_accept_respects_intensity_limits():
    img = np.zeros((1, 10, 10), np.int16)
    img[0, :, 5:] = 200
    doc, hist, ctl = make(image=img)
    ctl.preview.set_result(((0, 1), (0, 10), (0, 10)), np.ones((1, 10, 10), np.int64), "Click to segment", "click")
    ctl.brush.threshold = (100, 300)
    ctl.apply_patch(ctl.accept_job()())
    assert doc.mask[0, :, 5:].all() and not doc.mask[0, :, :5].any()


def test_accept_refuses_a_patch_when_the_mask_changed_meanwhile():
    from desktop_app.state.label_ops import StalePatchError

    doc, hist, ctl = make()
    ctl.preview.set_result(((0, 1), (0, 5), (0, 5)), np.ones((1, 5, 5), np.int64), "Grow from seeds", "seeds")
    job = ctl.accept_job()
    ctl.tool = "brush"
    ctl.press(0, 4, 20, 20)
    ctl.release()
    with pytest.raises(StalePatchError):
        ctl.apply_patch(job())


def test_discard_leaves_mask_and_history_alone():
    doc, hist, ctl = make()
    ctl.tool = "seeds"
    ctl.press(0, 1, 5, 5)
    ctl.release()
    ctl.preview.set_result(((1, 2), (0, 5), (0, 5)), np.ones((1, 5, 5), np.int64), "Grow from seeds", "seeds")
    assert ctl.discard() is True
    assert not ctl.preview.active and not doc.mask.any() and not hist.can_undo()
    assert ctl.discard() is False


def test_stale_grow_results_are_refused():
    doc, hist, ctl = make()
    ctl.tool = "seeds"
    ctl.press(0, 1, 5, 5)
    ctl.release()
    generation = ctl.preview.generation
    ctl.press(0, 1, 9, 9)  # another stroke while the grow ran
    ctl.release()
    assert not ctl.preview.set_result(((1, 2), (0, 5), (0, 5)), np.ones((1, 5, 5), np.int64), "Grow", "seeds",
                                      generation=generation)
    assert not ctl.preview.has_result


def test_preview_slices_for_display():
    doc, hist, ctl = make((4, 8, 9))
    proposal = np.zeros((2, 3, 3), np.int64)
    proposal[1, 1, 1] = 5
    ctl.preview.set_result(((1, 3), (2, 5), (3, 6)), proposal, "Click", "click")
    assert ctl.preview.result_slice(doc.mask.shape, 0, 1) is None  # nothing on that slice
    sl = ctl.preview.result_slice(doc.mask.shape, 0, 2)
    assert sl.shape == (8, 9) and sl[3, 4] == 5 and sl.sum() == 5
    cor = ctl.preview.result_slice(doc.mask.shape, 1, 3)
    assert cor.shape == (4, 9) and cor[2, 4] == 5
    ctl.tool = "seeds"
    ctl.brush.size = 1
    ctl.press(2, 4, 1, 2, erase=True)
    ctl.release()
    seeds = ctl.preview.seed_slice(doc.mask.shape, 2, 4)
    assert seeds.shape == (4, 8) and seeds[1, 2] == BACKGROUND_SEED + 1 and seeds.sum() == 1


def test_click_tool_asks_for_a_region_at_the_clicked_voxel():
    doc, hist, ctl = make()
    ctl.tool = "click"
    ctl.brush.label = 4
    asked = []
    ctl.requested.connect(lambda kind, payload: asked.append((kind, payload)))
    assert ctl.press(1, 12, 2.4, 30.6) is None
    assert asked == [("click", ClickRequest(1, (2, 12, 31), 4, False))]
    assert not hist.can_undo()


def test_clicks_add_up_in_the_preview():
    doc, hist, ctl = make()
    a = np.ones((1, 2, 2), bool)
    ctl.preview.merge_result(((0, 1), (0, 2), (0, 2)), a, 1, "Click to segment", "click")
    ctl.preview.merge_result(((0, 1), (5, 7), (5, 7)), a, 2, "Click to segment", "click")
    assert ctl.preview.bbox == ((0, 1), (0, 7), (0, 7))
    assert ctl.preview.labels[0, 0, 0] == 1 and ctl.preview.labels[0, 6, 6] == 2
    ctl.preview.merge_result(((0, 1), (0, 2), (0, 2)), a, 0, "Click to segment", "click")  # Shift+click removes
    assert ctl.preview.labels[0, 0, 0] == 0


def test_switching_tool_drops_another_tools_preview():
    doc, hist, ctl = make()
    ctl.tool = "seeds"
    ctl.press(0, 1, 5, 5)
    ctl.release()
    ctl.tool = "click"
    assert not ctl.preview.active


# ----- lasso ----------------------------------------------------------------------------------
def test_lasso_fills_the_outline_as_one_undo_step():
    doc, hist, ctl = make()
    ctl.tool = "lasso"
    ctl.brush.label = 2
    for n, (r, c) in enumerate([(5, 5), (5, 15), (15, 15), (15, 5)]):
        (ctl.press if n == 0 else ctl.move)(0, 3, r, c)
    assert ctl.lasso_points == [(5.0, 5.0), (5.0, 15.0), (15.0, 15.0), (15.0, 5.0)]
    assert ctl.release() is True
    assert (doc.mask[3, 6:15, 6:15] == 2).all()
    assert not doc.mask[3, :4].any() and not doc.mask[2].any() and not doc.mask[4].any()
    assert hist.undo_text.endswith("Lasso fill")
    # Shift: erase the inside
    for n, (r, c) in enumerate([(8, 8), (8, 12), (12, 12), (12, 8)]):
        (ctl.press if n == 0 else ctl.move)(0, 3, r, c, **({"erase": True} if n == 0 else {}))
    ctl.release()
    assert not doc.mask[3, 9:12, 9:12].any() and doc.mask[3, 6, 6] == 2
    assert hist.undo() and (doc.mask[3, 9:12, 9:12] == 2).all()


def test_lasso_with_two_points_changes_nothing():
    doc, hist, ctl = make()
    ctl.tool = "lasso"
    ctl.press(0, 3, 5, 5)
    ctl.move(0, 3, 5, 15)
    with pytest.raises(LassoError):
        ctl.release()
    assert not doc.mask.any() and not hist.can_undo()


def test_lasso_points_on_another_slice_are_ignored():
    doc, hist, ctl = make()
    ctl.tool = "lasso"
    ctl.press(0, 3, 5, 5)
    ctl.move(0, 4, 25, 25)
    ctl.move(0, 3, 5, 15)
    ctl.move(0, 3, 15, 15)
    ctl.release()
    assert doc.mask[3].any() and not doc.mask[4].any() and not doc.mask[3, 20:].any()


# ----- smart brush ----------------------------------------------------------------------------
def test_smart_brush_paints_only_voxels_like_the_centre():
    img = np.zeros((1, 30, 30), np.float32)
    img[0, :, 15:] = 500.0  # an edge through the brush
    doc, hist, ctl = make(image=img, spacing=(1.0, 1.0, 1.0))
    ctl.tool = "smart_brush"
    ctl.brush.size = 11
    ctl.smart_tolerance = 0.3
    ctl.press(0, 0, 15, 12)
    ctl.release()
    painted = doc.mask[0] > 0
    assert painted[15, 12] and painted[15, 14] and not painted[:, 15:].any()
    assert hist.undo_text.endswith("Smart brush stroke")
