"""Autosave journal and crash recovery (no Qt)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.journal import (
    Journal,
    RecoveryError,
    autosave_root,
    discard_recovery,
    find_recoverable,
    list_recoverable,
    load_recovery,
    prune_recoverable,
    scan_key,
)
from desktop_app.state.tools import ToolController
from unet_engine.errors import GeometryMismatchError
from unet_engine.volume import Volume


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLOOP_HOME", str(tmp_path / "home"))
    yield
    left = [t for t in threading.enumerate() if t.name == "segloop-autosave"]
    assert not left, "an autosave thread was left running"


def volume(tmp_path, name="case_001.nii.gz", shape=(6, 30, 40)):
    return Volume(
        np.zeros(shape, np.int16), spacing=(3.0, 0.8, 0.8), origin=(1.0, 2.0, 3.0), source_path=tmp_path / name
    )


def open_doc(tmp_path, **kw):
    doc = Document()
    doc.set_image(volume(tmp_path, **kw))
    hist = History(doc)
    return doc, hist, ToolController(doc, hist)


def wait_for(cond, timeout=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_background_write_and_round_trip(tmp_path):
    doc, hist, ctl = open_doc(tmp_path)
    doc.labels.rename(1, "Tumour") if 1 in doc.labels else doc.labels.add("Tumour", value=1)
    journal = Journal(doc, interval_s=0.05)
    journal.start()
    try:
        assert wait_for(lambda: journal.checks >= 2)
        assert journal.writes == 0  # clean document: nothing written
        edited_at = time.time()
        ctl.press(0, 2, 10, 10)
        ctl.move(0, 2, 20, 30)
        ctl.release()
        # the autosave thread (no flush here) writes the edited mask; how soon: bench/latency_bench.py
        assert wait_for(lambda: journal.up_to_date)
        assert journal.writes >= 1 and journal.last_error is None
        on_disk = find_recoverable(tmp_path / "case_001.nii.gz")
        assert on_disk is not None and np.array_equal(load_recovery(on_disk), doc.mask)
        n, checked = journal.writes, journal.checks
        assert wait_for(lambda: journal.checks >= checked + 2)
        assert journal.writes == n  # no change: no rewrite
    finally:
        journal.stop()
    assert not journal.running
    info = find_recoverable(tmp_path / "case_001.nii.gz")
    assert info is not None and info.scan_path == tmp_path / "case_001.nii.gz"
    assert info.shape == (6, 30, 40) and info.dtype == "uint8"
    assert edited_at <= info.saved_at <= time.time()  # the snapshot of this edit, not an older one
    mask = load_recovery(info, doc.image)
    assert np.array_equal(mask, doc.mask) and mask.flags.writeable
    assert info.label_table()[1].name == "Tumour"
    assert [i.folder for i in list_recoverable()] == [info.folder]
    assert len(list(info.folder.glob("mask-*.zlib"))) == 1


def test_flush_writes_latest_state_and_keeps_one_mask_file(tmp_path):
    doc, hist, ctl = open_doc(tmp_path)
    journal = Journal(doc, interval_s=10)
    assert not journal.flush()
    ctl.press(0, 1, 5, 5)
    ctl.release()
    assert journal.flush() and not journal.flush()
    ctl.press(0, 3, 5, 5)
    ctl.release()
    assert journal.flush()
    info = find_recoverable(doc.image.source_path)
    assert np.array_equal(load_recovery(info), doc.mask)
    assert len(list(info.folder.glob("mask-*.zlib"))) == 1
    state = json.loads((info.folder / "state.json").read_text())
    assert state["scan_path"] == str(doc.image.source_path) and state["spacing"] == [3.0, 0.8, 0.8]


def test_discard_after_save(tmp_path):
    doc, hist, ctl = open_doc(tmp_path)
    journal = Journal(doc, interval_s=10)
    ctl.press(0, 1, 5, 5)
    ctl.release()
    journal.flush()
    assert find_recoverable(doc.image.source_path) is not None
    doc.mark_saved(tmp_path / "mask.nii.gz")
    journal.discard()
    assert find_recoverable(doc.image.source_path) is None
    assert not journal.flush()  # nothing new since the save


def test_geometry_is_checked_on_recovery(tmp_path):
    doc, hist, ctl = open_doc(tmp_path)
    ctl.press(0, 1, 5, 5)
    ctl.release()
    Journal(doc).flush()
    info = find_recoverable(doc.image.source_path)
    other = Volume(np.zeros((6, 30, 40), np.int16), spacing=(3.0, 0.8, 0.9), origin=(1.0, 2.0, 3.0))
    with pytest.raises(GeometryMismatchError, match="spacing"):
        load_recovery(info, other)
    with pytest.raises(GeometryMismatchError, match="shape"):
        load_recovery(info, volume(tmp_path, shape=(6, 30, 41)))
    assert np.array_equal(load_recovery(info, volume(tmp_path)), doc.mask)


def test_damaged_snapshot_is_reported(tmp_path):
    doc, hist, ctl = open_doc(tmp_path)
    ctl.press(0, 1, 5, 5)
    ctl.release()
    Journal(doc).flush()
    info = find_recoverable(doc.image.source_path)
    path = info.folder / info.mask_file
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(RecoveryError, match="damaged"):
        load_recovery(info)
    (info.folder / "state.json").write_text("{ not json")
    assert find_recoverable(doc.image.source_path) is None and list_recoverable() == []


def test_two_scans_two_folders_and_untitled(tmp_path):
    doc, hist, ctl = open_doc(tmp_path, name="a.nii.gz")
    journal = Journal(doc)
    ctl.press(0, 1, 5, 5)
    ctl.release()
    journal.flush()
    doc.set_image(volume(tmp_path, name="b.nii.gz"))
    ctl.press(0, 2, 5, 5)
    ctl.release()
    journal.flush()
    doc.set_image(Volume(np.zeros((3, 4, 5), np.int16)))  # never read from disk
    ctl.press(0, 1, 1, 1)
    ctl.release()
    journal.flush()
    infos = list_recoverable()
    assert len(infos) == 3 and infos[0].scan_path is None
    assert find_recoverable(None, volume=doc.image) is not None
    assert (load_recovery(find_recoverable(tmp_path / "a.nii.gz")) == 1).sum() == 21  # the default 5-voxel dab
    assert scan_key(tmp_path / "a.nii.gz").startswith("a-")
    discard_recovery(infos[0])
    assert len(list_recoverable()) == 2
    assert prune_recoverable(max_age_s=-1) == 2 and not any(autosave_root().iterdir())


def test_writer_thread_does_not_block_editing(tmp_path):
    doc = Document()
    doc.set_image(Volume(np.zeros((40, 256, 256), np.int16), source_path=tmp_path / "big.nii.gz"))
    hist = History(doc)
    ctl = ToolController(doc, hist)
    journal = Journal(doc, interval_s=0.01)
    journal.start()
    try:
        for n in range(30):
            ctl.press(0, n, 100, 100)
            ctl.move(0, n, 150, 120)
            ctl.release()
            time.sleep(0.005)
        assert wait_for(lambda: journal.writes >= 1)
    finally:
        journal.stop(flush=True)
    assert journal.last_error is None
    assert np.array_equal(load_recovery(find_recoverable(tmp_path / "big.nii.gz")), doc.mask)
