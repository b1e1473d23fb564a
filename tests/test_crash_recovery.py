"""Autosave and crash recovery through the real app.

* A subprocess builds the real app (``build_app``), opens a real scan, paints strokes
  with mouse events on the axial view and prints a line after each, and another once its
  autosave thread has written the stroke; the test kills it with SIGKILL right after the
  last stroke, reopens the scan in a fresh app and checks that "Restore unsaved mask from
  <time>?" is asked and that every stroke autosaved before the kill is restored voxel for
  voxel. (How soon the journal writes: bench/latency_bench.py.)
* In process: declining deletes the snapshot; a save and a clean close delete it;
  opening another scan drops the previous scan's snapshot.

Run as ``python tests/test_crash_recovery.py driver SCAN`` it is the subprocess.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"  # 35x51x35, 1 mm
OTHER = ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "hippocampus_003.nii.gz"
INTERVAL_S = 1.0  # SEGLOOP_AUTOSAVE_S for the subprocess
K = 17  # axial slice the strokes are drawn on
BRUSH = 3  # voxels, round
#: Strokes (kji voxel centres) on axial slice K, label 1.
STROKES = [
    [(K, 10, 8), (K, 12, 20)],
    [(K, 30, 5), (K, 30, 25), (K, 36, 28)],
    [(K, 44, 10), (K, 40, 20)],
]


# ----- the subprocess ------------------------------------------------------------------------------
def driver(scan: str) -> int:
    """Open ``scan`` in the real app, paint STROKES with mouse events, then idle until killed."""
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtTest import QTest

    app = QtWidgets.QApplication([])
    from desktop_app.app import build_app
    from desktop_app.editing import editing_controller

    parts = build_app(restore_layout=False)
    parts.window.resize(1200, 800)
    parts.window.show()
    ed = editing_controller(parts.window)
    opened: list = []
    parts.controller.scan_opened.connect(opened.append)
    parts.controller.open_scan(scan)
    deadline = time.time() + 60
    while not opened:
        app.processEvents()
        time.sleep(0.005)
        if time.time() > deadline:
            print("ERROR scan not opened", parts.controller.last_error, flush=True)
            return 1
    doc = parts.document
    doc.set_cursor((K, doc.cursor[1], doc.cursor[2]))
    ed.tool_panel.size_spin.setValue(BRUSH)
    ed.set_tool("brush")
    view = parts.grid.views["axial"]
    vp = view.canvas.viewport()
    g = view.geometry_info
    app.processEvents()
    print(f"READY journal={ed.journal.running} interval={ed.journal.interval_s}", flush=True)

    def pos(kji):
        x, y = g.crosshair_mm(kji)
        return view.display_to_widget(y / g.row_spacing, x / g.col_spacing)

    left, nomod = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    for n, points in enumerate(STROKES):
        QTest.mousePress(vp, left, nomod, pos(points[0]))
        for p in points[1:]:
            QTest.mouseMove(vp, pos(p))
        QTest.mouseRelease(vp, left, nomod, pos(points[-1]))
        print(f"STROKE {n} voxels={int((doc.mask > 0).sum())}", flush=True)
        if n == len(STROKES) - 1:
            break
        deadline = time.time() + 60
        while not ed.journal.up_to_date:  # the event loop keeps running, as in the real app
            app.processEvents()
            time.sleep(0.01)
            if time.time() > deadline:
                print("ERROR stroke not autosaved", ed.journal.last_error, flush=True)
                return 1
        print(f"AUTOSAVED {n} writes={ed.journal.writes}", flush=True)
    while True:  # idle, as a running app, until killed
        app.processEvents()
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _no_autosave_thread_left():
    """The journal's thread must stop when the window closes (qtbot closes it)."""
    yield
    left = [t for t in threading.enumerate() if t.name == "segloop-autosave" and t.is_alive()]
    assert not left, "autosave thread still running after the test"


# ----- helpers ---------------------------------------------------------------------------------
def reference_masks(volume) -> list[np.ndarray]:
    """Mask after each stroke, painted through a ToolController."""
    from desktop_app.state.document import Document
    from desktop_app.state.history import History
    from desktop_app.state.tools import ToolController

    doc = Document()
    doc.set_image(volume)
    ctl = ToolController(doc, History(doc))
    ctl.tool = "brush"
    ctl.brush.size = BRUSH
    out = []
    for points in STROKES:
        ctl.press(0, K, points[0][1], points[0][2])
        for p in points[1:]:
            ctl.move(0, K, p[1], p[2])
        ctl.release()
        out.append(doc.mask.copy())
    return out


def open_and_wait(parts, scan: Path) -> None:
    from PySide6 import QtWidgets

    assert parts.controller.open_scan(scan) is not None
    assert parts.controller.workers.wait_idle(20_000)
    QtWidgets.QApplication.processEvents()
    assert parts.document.image is not None


def _reader(stream, q: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        q.put((time.time(), line.rstrip("\n")))
    q.put((time.time(), None))


# ----- tests -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_then_restart_restores_the_autosaved_strokes(segloop_app, _segloop_home, qtbot):
    from desktop_app.editing import RESTORE_DESCRIPTION, editing_controller
    from desktop_app.state.journal import list_recoverable

    env = dict(os.environ, SEGLOOP_HOME=str(_segloop_home), QT_QPA_PLATFORM="offscreen",
               SEGLOOP_AUTOSAVE_S=str(INTERVAL_S), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, __file__, "driver", str(SCAN)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    strokes: list[int] = []
    autosaved: list[int] = []
    log: list[str] = []
    killed = False
    try:
        deadline = time.time() + 90
        while not killed:
            _t, line = lines.get(timeout=max(0.1, deadline - time.time()))
            assert line is not None, "driver exited early:\n" + "\n".join(log)
            log.append(line)
            assert not line.startswith("ERROR"), line
            if line.startswith("READY"):
                assert "journal=True" in line
            if line.startswith("AUTOSAVED"):
                autosaved.append(int(line.split()[1]))
            if line.startswith("STROKE"):
                strokes.append(int(line.split()[1]))
                if len(strokes) == len(STROKES):
                    os.kill(proc.pid, signal.SIGKILL)  # no chance to save or clean up
                    killed = True
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    infos = list_recoverable()
    assert len(infos) == 1 and infos[0].scan_path == SCAN.resolve()

    # restart: a fresh app opens the same scan and is offered the snapshot
    parts = segloop_app
    ed = editing_controller(parts.window)
    asked: list[str] = []
    ed.ask_restore = lambda info: asked.append(ed.restore_question(info)) or True
    open_and_wait(parts, SCAN)
    assert len(asked) == 1 and asked[0].startswith("Restore unsaved mask from ") and asked[0].endswith("?")
    refs = reference_masks(parts.document.image)
    mask = parts.document.mask
    # every stroke the journal had written before the kill must be there
    must = autosaved
    assert must == [0, 1], log
    matches = [n for n, ref in enumerate(refs) if np.array_equal(mask, ref)]
    assert matches and matches[0] >= must[-1], f"restored mask is none of the stroke states >= {must[-1]}"
    for n in must:  # the exact voxels of those strokes
        assert np.all(mask[refs[n] > 0] == 1)
    assert parts.document.dirty
    assert parts.window.named_actions["undo"].text() == f"Undo {RESTORE_DESCRIPTION}"
    parts.window.named_actions["undo"].trigger()  # restoring was one undoable step
    assert not parts.document.mask.any()
    parts.window.named_actions["redo"].trigger()
    np.testing.assert_array_equal(parts.document.mask, refs[matches[0]])


def test_declined_recovery_is_discarded_and_save_or_close_clear_the_snapshot(segloop_app, qtbot, tmp_path):
    from desktop_app.editing import editing_controller
    from desktop_app.state.journal import find_recoverable

    parts = segloop_app
    ed = editing_controller(parts.window)
    open_and_wait(parts, SCAN)
    assert ed.journal.running
    doc = parts.document
    ed.tools.tool = "brush"
    ed.tools.press(0, K, 20, 20)
    ed.tools.release()
    assert ed.journal.flush()
    info = find_recoverable(SCAN)
    assert info is not None and info.scan_path == SCAN.resolve()
    # save: the snapshot goes (the document is clean)
    assert parts.controller.save_mask(tmp_path / "mask.nii.gz") is not None
    assert parts.controller.workers.wait_idle(20_000)
    qtbot.waitUntil(lambda: not doc.dirty, timeout=5000)
    assert find_recoverable(SCAN) is None
    # edit again; a snapshot appears; declining it at the next open deletes it
    ed.tools.press(0, K, 25, 25)
    ed.tools.release()
    assert ed.journal.flush() and find_recoverable(SCAN) is not None
    ed.journal.stop()
    ed._journal_folder = None  # as if the app had crashed here: nothing cleaned up
    asked = []
    ed.ask_restore = lambda info: asked.append(info) or False
    doc.mark_saved(tmp_path / "mask.nii.gz")  # skip the unsaved-changes question
    open_and_wait(parts, SCAN)
    assert len(asked) == 1 and find_recoverable(SCAN) is None
    assert not doc.mask.any() and not parts.window.named_actions["undo"].isEnabled()
    # opening another scan drops this scan's snapshot (its edits were discarded)
    ed.tools.press(0, K, 20, 20)
    ed.tools.release()
    assert ed.journal.flush() and find_recoverable(SCAN) is not None
    open_and_wait(parts, OTHER)
    assert find_recoverable(SCAN) is None
    # a clean close (unsaved edits confirmed discarded) stops the journal and deletes the snapshot
    ed.tools.press(0, K, 20, 20)
    ed.tools.release()
    assert ed.journal.flush() and find_recoverable(OTHER) is not None
    assert parts.window.close()
    assert not ed.journal.running and find_recoverable(OTHER) is None


def test_cancelled_close_keeps_journal_running(segloop_app, qtbot):
    from desktop_app.editing import editing_controller
    from desktop_app.state.journal import find_recoverable

    parts = segloop_app
    ed = editing_controller(parts.window)
    open_and_wait(parts, SCAN)
    ed.tools.tool = "brush"
    ed.tools.press(0, K, 20, 20)
    ed.tools.release()
    assert ed.journal.flush()
    parts.controller.ask_discard_changes = lambda: False  # "Cancel" on the unsaved-mask question
    assert not parts.window.close()
    assert ed.journal.running and find_recoverable(SCAN) is not None
    parts.controller.ask_discard_changes = lambda: True


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "driver":
    sys.exit(driver(sys.argv[2]))
