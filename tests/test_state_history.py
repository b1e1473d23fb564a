"""Undo/redo history: random sequences, full-mask entries, memory cap (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.state import history as history_mod
from desktop_app.state.document import Document
from desktop_app.state.fill import flood_fill
from desktop_app.state.history import History
from desktop_app.state.tools import BrushSettings, ToolController
from unet_engine.volume import Volume

# not a multiple of the chunk shape, so strokes cross chunk borders and the volume edge
SHAPE = (13, 70, 90)


def make(shape=SHAPE, max_bytes=history_mod.DEFAULT_MAX_BYTES, dtype=np.uint8):
    doc = Document()
    doc.set_image(Volume(np.zeros(shape, np.int16), spacing=(2.5, 0.9, 0.7)), mask=np.zeros(shape, dtype))
    hist = History(doc, max_bytes=max_bytes)
    return doc, hist, ToolController(doc, hist)


def random_op(ctl: ToolController, rng: np.random.Generator) -> None:
    shape = ctl.document.mask.shape
    axis = int(rng.integers(3))
    ra, ca = [a for a in range(3) if a != axis]
    s = int(rng.integers(shape[axis]))
    kind = rng.random()
    ctl.brush = BrushSettings(
        shape=str(rng.choice(["round", "square"])),
        size=float(rng.integers(1, 12)),
        unit=str(rng.choice(["voxel", "mm"])),
        mode=str(rng.choice(["2d", "3d"], p=[0.7, 0.3])),
        label=int(rng.integers(1, 4)),
        paint_over=str(rng.choice(["all", "empty", "label"])),
        paint_over_label=int(rng.integers(0, 4)),
    )
    if kind < 0.1:
        ctl.tool = "fill"
    else:
        ctl.tool = "eraser" if kind < 0.3 else "brush"
    pts = [(rng.uniform(-3, shape[ra] + 3), rng.uniform(-3, shape[ca] + 3)) for _ in range(int(rng.integers(1, 6)))]
    ctl.press(axis, s, *pts[0])
    for p in pts[1:]:
        ctl.move(axis, s, *p)
    ctl.release()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_undo_all_and_redo_all(seed):
    rng = np.random.default_rng(seed)
    doc, hist, ctl = make()
    doc.mask[4:9, 20:40, 30:60] = 1  # a non-empty start
    states = [doc.mask.copy()]
    for _ in range(40):
        n = hist.undo_count
        random_op(ctl, rng)
        if hist.undo_count > n:
            states.append(doc.mask.copy())
        else:
            assert np.array_equal(doc.mask, states[-1])  # no entry -> nothing changed
    assert hist.undo_count == len(states) - 1 > 20
    for i in range(len(states) - 2, -1, -1):
        assert hist.undo()
        assert np.array_equal(doc.mask, states[i])
    assert not hist.can_undo() and not hist.undo()
    for i in range(1, len(states)):
        assert hist.redo()
        assert np.array_equal(doc.mask, states[i])
    assert not hist.can_redo()
    # partial undo then a new stroke drops the redo branch
    hist.undo()
    hist.undo()
    assert hist.redo_count == 2
    ctl.tool = "brush"
    ctl.brush = BrushSettings(size=3, label=2)
    ctl.press(0, 1, 1, 1)
    ctl.release()
    assert hist.redo_count == 0 and not hist.can_redo()


def test_uint16_mask_and_large_labels():
    doc, hist, ctl = make(dtype=np.uint16)
    ctl.brush = BrushSettings(size=5, label=1000)
    ctl.press(0, 3, 10, 10)
    ctl.release()
    assert doc.mask.dtype == np.uint16 and (doc.mask == 1000).sum() == 21
    hist.undo()
    assert not doc.mask.any()


def test_undo_redo_emit_mask_changed_with_bbox_and_texts():
    doc, hist, ctl = make()
    assert hist.undo_text == "Undo" and hist.redo_text == "Redo"
    ctl.brush = BrushSettings(size=3, shape="square")
    ctl.press(0, 2, 10, 10)
    ctl.move(0, 2, 10, 20)
    ctl.release()
    seen = []
    doc.mask_changed.connect(seen.append)
    changes = []
    hist.changed.connect(lambda: changes.append(1))
    hist.undo()
    assert seen == [((2, 3), (9, 12), (9, 22))]
    assert hist.redo_text == "Redo Brush stroke" and hist.undo_text == "Undo"
    hist.redo()
    assert seen[-1] == ((2, 3), (9, 12), (9, 22)) and len(changes) == 2


def test_apply_full_mask_is_one_entry_cropped_to_the_difference():
    doc, hist, _ = make()
    doc.mask[1, 1, 1] = 3
    new = doc.mask.copy()
    new[5:7, 10:30, 40:50] = 2
    seen = []
    doc.mask_changed.connect(seen.append)
    assert hist.apply_full_mask(new, "AI prediction")
    assert seen == [((5, 7), (10, 30), (40, 50))]
    assert np.array_equal(doc.mask, new) and hist.undo_text == "Undo AI prediction"
    assert 2 in doc.labels
    hist.undo()
    assert doc.mask.sum() == 3
    hist.redo()
    assert np.array_equal(doc.mask, new)
    assert not hist.apply_full_mask(new.copy())  # identical: no entry
    with pytest.raises(ValueError):
        hist.apply_full_mask(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError):
        hist.apply_full_mask(np.full(SHAPE, 300, np.uint16))
    assert hist.apply_full_mask(np.ones(SHAPE, np.int64))  # fits: cast to the mask's dtype
    assert doc.mask.dtype == np.uint8 and doc.mask.all()


def test_transaction_context_manager_rolls_back_on_error():
    doc, hist, _ = make()
    doc.mask[2, 5:10, 5:10] = 1
    before = doc.mask.copy()
    with pytest.raises(RuntimeError):
        with hist.transaction("Broken op") as txn:
            txn.touch(((0, 13), (0, 70), (0, 90)))
            doc.mask[...] = 7
            txn.changed(((0, 13), (0, 70), (0, 90)))
            raise RuntimeError("boom")
    assert np.array_equal(doc.mask, before) and hist.undo_count == 0


def test_undo_mid_stroke_commits_the_stroke_first():
    doc, hist, ctl = make()
    ctl.press(0, 2, 10, 10)
    ctl.move(0, 2, 10, 30)
    assert hist.can_undo()
    assert ctl.undo()  # ToolController.undo releases the stroke, then undoes it
    assert not doc.mask.any()
    ctl.press(0, 2, 10, 10)
    hist.undo()  # undo straight on the history: the stroke is committed and undone
    assert ctl.move(0, 2, 10, 30) is None and not doc.mask.any()
    assert ctl.release() is False


def test_new_scan_or_replaced_mask_clears_history():
    doc, hist, ctl = make()
    ctl.press(0, 2, 10, 10)
    ctl.release()
    doc.replace_mask(np.zeros(SHAPE, np.uint8))
    assert hist.undo_count == 0 and hist.bytes_used == 0
    ctl.press(0, 2, 10, 10)
    ctl.release()
    doc.set_image(Volume(np.zeros((3, 4, 5), np.int16)))
    assert hist.undo_count == 0 and not hist.can_undo()


def test_memory_cap_drops_oldest_entries():
    cap = 40_000
    doc, hist, ctl = make(max_bytes=cap)
    rng = np.random.default_rng(5)
    states = [doc.mask.copy()]
    for n in range(150):
        # noisy big strokes compress badly, so the cap is reached quickly
        doc.image.array[...] = rng.integers(0, 100, SHAPE)
        ctl.brush = BrushSettings(size=15, label=1 + n % 3, threshold=(0, 50), mode="3d", unit="voxel")
        ctl.press(0, int(rng.integers(13)), float(rng.integers(70)), float(rng.integers(90)))
        ctl.release()
        states.append(doc.mask.copy())
        assert hist.bytes_used <= cap
    assert hist.dropped > 0 and hist.undo_count + hist.dropped == 150
    # what is left still undoes exactly (undo may drop more: the swapped side can be bigger)
    undone = 0
    while hist.undo():
        undone += 1
        assert np.array_equal(doc.mask, states[150 - undone]) and hist.bytes_used <= cap
    assert undone > 0
    hist.set_max_bytes(1000)
    assert hist.bytes_used <= 1000


def test_bytes_used_is_small_for_strokes_and_counts_open_chunks():
    doc, hist, ctl = make()
    ctl.press(0, 2, 10, 10)
    assert hist.bytes_used >= np.prod(history_mod.CHUNK_SHAPE)  # lazily captured chunk
    ctl.release()
    assert 0 < hist.bytes_used < 2000


def test_fill_is_one_entry_and_round_trips():
    doc, hist, _ = make()
    doc.mask[3, 10, :] = 1
    before = doc.mask.copy()
    flood_fill(doc, hist, 0, 3, 50, 50, 2)
    assert hist.undo_count == 1
    hist.undo()
    assert np.array_equal(doc.mask, before)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_payload_codecs_round_trip(dtype):
    rng = np.random.default_rng(1)
    smooth = np.zeros((40, 64, 64), dtype)
    smooth[5:30, 10:50, 20:60] = 3
    smooth[10:20, 20:30, 25:35] = 300 if dtype == np.uint16 else 7
    noisy = rng.integers(0, 4, (40, 64, 64)).astype(dtype)
    tiny = np.arange(12, dtype=dtype).reshape(2, 2, 3)
    for arr, codec in ((smooth, "rle"), (noisy, "zlib"), (tiny, "raw")):
        payload, got = history_mod._encode(arr)
        assert got == codec
        assert np.array_equal(history_mod._decode(payload, got, arr.shape, np.dtype(dtype)), arr)
    assert len(history_mod._encode(smooth)[0]) < smooth.nbytes / 100
