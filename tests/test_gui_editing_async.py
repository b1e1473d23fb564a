"""One-shot mask ops (Interpolate slices, Fill holes, label Delete / Merge) compute in a
worker thread and apply as one undo step on the GUI thread: same voxels as the
synchronous state functions, buttons disabled while running, stale results refused, and
the GUI thread keeps ticking meanwhile."""

from __future__ import annotations

import threading
import time

import numpy as np
from PySide6 import QtCore, QtWidgets

from conftest import DATA
from desktop_app.editing import editing_controller
from desktop_app.state.document import Document
from desktop_app.state.fill import fill_holes
from desktop_app.state.history import History
from desktop_app.state.interpolation import interpolate_slices
from desktop_app.state.label_ops import delete_label, merge_labels
from gui_helpers import show_volume
from unet_engine.volume import Volume

SCAN = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz"  # 148x132x20 (k, j, i = 20, 132, 148)


def open_scan(parts):
    assert parts.controller.open_scan(SCAN) is not None
    assert parts.controller.workers.wait_idle(20_000)
    QtWidgets.QApplication.processEvents()
    ed = editing_controller(parts.window)
    assert ed is not None and parts.document.image is not None
    return ed


def wait_op(qtbot, ed) -> None:
    qtbot.waitUntil(lambda: not ed.op_running, timeout=30_000)
    assert not ed.controller.workers.is_busy or ed.controller.workers.wait_idle(10_000)


def set_mask(doc: Document, mask: np.ndarray) -> None:
    doc.mask[...] = mask
    doc.labels.ensure({int(v) for v in np.unique(mask) if v})
    doc.notify_mask_changed(None)


def reference(doc: Document, op) -> np.ndarray:
    """The synchronous state function on a copy of the document."""
    ref = Document()
    ref.set_image(doc.image, doc.mask.copy())
    ref.labels.replace_all(doc.labels.labels)
    op(ref, History(ref))
    return ref.mask


def ball(shape, centre, radius) -> np.ndarray:
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius**2


def two_discs(shape, k_a, k_b, radius=12) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    _, j, i = np.ogrid[: 1, : shape[1], : shape[2]]
    disc = (j - shape[1] // 2) ** 2 + (i - shape[2] // 2) ** 2 <= radius**2
    m[k_a][disc[0]] = 1
    m[k_b][disc[0]] = 1
    return m


def test_interpolate_button_runs_in_worker_and_matches_sync(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc, tp = parts.document, ed.tool_panel
    set_mask(doc, two_discs(doc.mask.shape, 4, 12))
    ed.tools.brush.label = 1
    parts.grid.set_active("axial")
    axis = parts.grid.active_view.geometry_info.axis  # the axis the op uses: the active view's
    before = doc.mask.copy()
    expected = reference(doc, lambda d, h: interpolate_slices(d, h, 1, axis))
    assert not np.array_equal(expected, before)
    n_undo = ed.history.undo_count
    tp.interpolate_button.click()
    assert ed.op_running and not tp.interpolate_button.isEnabled() and not tp.fill_holes_button.isEnabled()
    assert not ed.label_editor.buttons["delete"].isEnabled()
    wait_op(qtbot, ed)
    assert tp.interpolate_button.isEnabled() and tp.fill_holes_button.isEnabled()
    np.testing.assert_array_equal(doc.mask, expected)
    assert ed.history.undo_count == n_undo + 1
    assert parts.window.named_actions["undo"].text() == "Undo Interpolate label 1"
    parts.window.named_actions["undo"].trigger()
    np.testing.assert_array_equal(doc.mask, before)


def test_fill_holes_button_runs_in_worker_and_matches_sync(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc, tp = parts.document, ed.tool_panel
    shape = doc.mask.shape
    m = ball(shape, (10, 66, 74), 8).astype(np.uint8)
    m[ball(shape, (10, 66, 74), 3)] = 0  # a cavity
    m[10, 66, 74] = 2  # another label inside it stays
    set_mask(doc, m)
    ed.tools.brush.label = 1
    before = doc.mask.copy()
    expected = reference(doc, lambda d, h: fill_holes(d, h, 1, mode="3d"))
    assert (expected == 1).sum() > (before == 1).sum() and expected[10, 66, 74] == 2
    tp.fill_holes_mode.setCurrentIndex(tp.fill_holes_mode.findData("3d"))
    tp.fill_holes_button.click()
    assert ed.op_running and not tp.fill_holes_button.isEnabled()
    wait_op(qtbot, ed)
    np.testing.assert_array_equal(doc.mask, expected)
    assert parts.window.named_actions["undo"].text() == "Undo Fill holes in label 1"
    parts.window.named_actions["undo"].trigger()
    np.testing.assert_array_equal(doc.mask, before)


def test_label_delete_and_merge_run_in_worker(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc, le = parts.document, ed.label_editor
    m = np.zeros(doc.mask.shape, np.uint8)
    m[2:6, 20:40, 30:50] = 1
    m[8:12, 60:80, 60:90] = 2
    set_mask(doc, m)
    before = doc.mask.copy()
    expected = reference(doc, lambda d, h: merge_labels(d, h, 2, 1))
    le.ask_merge_target = lambda source: 1
    le.set_active(2)
    le.buttons["merge"].click()
    assert ed.op_running and not le.buttons["merge"].isEnabled() and not le.buttons["delete"].isEnabled()
    wait_op(qtbot, ed)
    np.testing.assert_array_equal(doc.mask, expected)
    assert 2 not in doc.labels and ed.tools.brush.label == 1 and le.buttons["delete"].isEnabled()
    parts.window.named_actions["undo"].trigger()
    np.testing.assert_array_equal(doc.mask, before)
    assert 2 in doc.labels
    expected = reference(doc, lambda d, h: delete_label(d, h, 1))
    le.set_active(1)
    le.buttons["delete"].click()
    wait_op(qtbot, ed)
    np.testing.assert_array_equal(doc.mask, expected)
    assert 1 not in doc.labels and ed.tools.brush.label == 2
    assert parts.window.named_actions["undo"].text().startswith("Undo Delete label")
    parts.window.named_actions["undo"].trigger()
    np.testing.assert_array_equal(doc.mask, before)
    assert 1 in doc.labels


def test_result_is_refused_when_the_mask_changed_meanwhile(segloop_app, qtbot):
    parts = segloop_app
    ed = open_scan(parts)
    doc = parts.document
    set_mask(doc, two_discs(doc.mask.shape, 4, 12))
    ed.tools.brush.label = 1
    parts.grid.set_active("axial")
    n_undo = ed.history.undo_count
    assert ed.interpolate()
    # an edit lands before the result is delivered (queued to this thread)
    doc.mask[0, 0, 0] = 1
    doc.notify_mask_changed(((0, 1), (0, 1), (0, 1)))
    edited = doc.mask.copy()
    wait_op(qtbot, ed)
    np.testing.assert_array_equal(doc.mask, edited)  # nothing applied
    assert ed.history.undo_count == n_undo
    assert "changed meanwhile" in parts.window.statusBar().currentMessage()
    assert ed.interpolate()  # running it again works
    wait_op(qtbot, ed)
    assert all(doc.mask[k].any() for k in range(4, 13))


def _gated(job, gui_ticks: list[int], needed: int = 3):
    """``job`` made to wait in its worker until the GUI thread has ticked ``needed`` more
    times: it can only finish if the GUI thread keeps processing events while it runs."""
    def run():
        ran_in.append(threading.get_ident())
        start = gui_ticks[0]
        deadline = time.monotonic() + 30.0  # a failure, not a hang, if the GUI thread is blocked
        while gui_ticks[0] < start + needed:
            if time.monotonic() > deadline:
                raise AssertionError("the GUI thread processed no events while the job ran")
            time.sleep(0.002)
        return job()
    ran_in: list[int] = []
    run.ran_in = ran_in  # type: ignore[attr-defined]
    return run


def _ticks_during(qtbot, ed, start) -> tuple[int, list[int]]:
    """Start an op whose job waits for GUI-thread timer ticks (see ``_gated``); (ticks seen
    while it ran, ids of the threads the job ran in)."""
    ticks = [0]
    timer = QtCore.QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    gated: list = []
    real = {"fill_holes_job": ed.tools.fill_holes_job, "interpolate_job": ed.tools.interpolate_job}

    def wrap(name):
        def make(*a, **k):
            gated.append(_gated(real[name](*a, **k), ticks))
            return gated[-1]
        return make
    for name in real:
        setattr(ed.tools, name, wrap(name))
    try:
        timer.start()
        assert start()
        assert ed.op_running  # started: the GUI thread is free again before the result
        wait_op(qtbot, ed)
        timer.stop()
    finally:
        for name in real:
            delattr(ed.tools, name)  # the class's methods again
    assert len(gated) == 1
    return ticks[0], gated[0].ran_in


def test_gui_thread_keeps_ticking_during_ops_on_a_large_volume(segloop_app, qtbot):
    """The GUI thread processes events while a one-shot op computes: the op's job (in its
    worker) waits for GUI-thread timer ticks before computing, so it only completes if the
    event loop runs meanwhile. How long the GUI thread stalls: bench/latency_bench.py."""
    parts = segloop_app
    ed = editing_controller(parts.window)
    shape = (200, 256, 256)
    vol = Volume(np.zeros(shape, np.int16), (1.0, 0.8, 0.8), (0.0, 0.0, 0.0), modality="CT")
    mask = np.zeros(shape, np.uint8)
    mask[ball(shape, (100, 128, 128), 90)] = 1
    mask[ball(shape, (100, 128, 128), 40)] = 0  # a big cavity
    mask[:20] = 0
    mask[180:] = 0
    mask[19] = two_discs((1, 256, 256), 0, 0, 60)[0]
    mask[181] = two_discs((1, 256, 256), 0, 0, 60)[0]
    show_volume(parts, vol, mask)
    QtWidgets.QApplication.processEvents()
    doc = parts.document
    ed.tools.brush.label = 1
    parts.grid.set_active("axial")
    gui = threading.get_ident()
    ticks, ran_in = _ticks_during(qtbot, ed, lambda: ed.fill_holes("3d"))
    assert ticks >= 3 and ran_in and gui not in ran_in, (ticks, ran_in)
    assert doc.mask[100, 128, 128] == 1  # the cavity is filled
    ticks, ran_in = _ticks_during(qtbot, ed, ed.interpolate)
    assert ticks >= 3 and ran_in and gui not in ran_in, (ticks, ran_in)
    assert doc.mask[50, 128, 60] == 1
