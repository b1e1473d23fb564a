"""Uncertainty review state and the correction-effort log (no Qt)."""

from __future__ import annotations

import numpy as np

from desktop_app.state.effort import EffortLog, EffortRecord, correction_stats, dice_text
from desktop_app.state.review import ReviewState, slice_stats


def _uncertainty():
    u = np.zeros((6, 4, 4), np.float32)
    u[1, 0, 0] = 0.9  # uncertain, low mean
    u[3] = 0.6  # uncertain, highest mean
    u[4, :2] = 0.7  # uncertain, middle mean
    u[5, 0, 0] = 0.3  # below the threshold
    return u


def test_slice_stats_and_order():
    smax, smean = slice_stats(_uncertainty(), axis=0)
    assert smax.tolist() == [0.0, np.float32(0.9), 0.0, np.float32(0.6), np.float32(0.7), np.float32(0.3)]
    r = ReviewState.from_uncertainty(_uncertainty())
    assert r.uncertain_slices == [3, 4, 1] and r.n_uncertain == 3
    assert r.summary() == "0 of 3 uncertain slices reviewed"


def test_next_marks_previous_jump_reviewed():
    r = ReviewState.from_uncertainty(_uncertainty())
    assert r.next_uncertain_slice() == 3
    assert r.n_reviewed == 0
    assert r.next_uncertain_slice() == 4
    assert r.reviewed == {3}
    r.mark_reviewed(1)  # marked by hand: skipped
    assert r.next_uncertain_slice() is None
    assert r.is_done() and r.summary() == "3 of 3 uncertain slices reviewed"


def test_other_axis_and_empty():
    r = ReviewState.from_uncertainty(np.moveaxis(_uncertainty(), 0, 2), axis=2)
    assert r.uncertain_slices == [3, 4, 1]
    e = ReviewState.empty()
    assert e.next_uncertain_slice() is None and "run the model" in e.summary()
    r.mark_reviewed(5)  # not uncertain: does not count
    assert r.n_reviewed == 0


def test_correction_stats():
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, :2] = 1
    corr = pred.copy()
    corr[0, 0] = 2
    edited, changed, dice = correction_stats(pred, corr, {0: "bg", 1: "a", 2: "b", 3: "c"})
    assert changed == 4 and int(edited.sum()) == 4
    assert dice["a"] == 2 * 4 / (8 + 4) and dice["b"] == 0.0 and dice["c"] is None  # c: in neither mask, n/a
    assert dice_text(dice) == "a 0.667, b 0.000, c n/a"


def test_effort_log_roundtrip(tmp_path):
    log = EffortLog(tmp_path / "effort.json")
    log.add(EffortRecord("case1", "v0001", 100, 1000, {"a": 0.9}, time=1.0))
    log.add(EffortRecord("case2", "v0002", 10, 1000, {"a": 0.99}, time=2.0))
    log.add(EffortRecord("case1", "v0001", 80, 1000, {"a": 0.92}, time=3.0))  # re-added: replaces
    again = EffortLog(tmp_path / "effort.json")
    assert [(r.case, r.voxels_changed) for r in again.records()] == [("case2", 10), ("case1", 80)]
    assert again.mean_by_version() == {"v0002": 10.0, "v0001": 80.0}


def test_effort_log_unreadable(tmp_path):
    p = tmp_path / "effort.json"
    p.write_text("{not json")
    assert EffortLog(p).records() == []
