"""Editing-layer benchmark: brush move cost, overlay repaint proxy, history memory.

Usage: .venv/bin/python bench/edit_bench.py [--strokes 10000] [--quick]

On a 512x512x400 uint8 mask (spacing 1.0 x 0.8 x 0.8 mm) it reports:

* one brush move (dab along the segment from the last point + lazy history capture +
  bbox bookkeeping + the ``mask_changed`` emit): median and p95, for several brushes
  and views; the first dab (press) and the commit (release) separately;
* the overlay repaint proxy: the changed 2D region of the mask mapped through a 256x4
  RGBA LUT with numpy (and a whole 512x512 slice for reference);
* the baseline in the same process: a naive undo that copies the whole mask per stroke;
* history memory after N strokes (must stay under the 512 MB cap), the "AI prediction"
  full-mask entry, and one autosave snapshot (compress + atomic write).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from desktop_app.state.document import Document
from desktop_app.state.history import DEFAULT_MAX_BYTES, History
from desktop_app.state.journal import Journal
from desktop_app.state.tools import BrushSettings, ToolController
from unet_engine.volume import Volume

SHAPE = (400, 512, 512)
SPACING = (1.0, 0.8, 0.8)


def stats(ts: list[float]) -> str:
    a = np.asarray(ts) * 1e3
    return f"median {np.median(a):7.3f} ms  p95 {np.percentile(a, 95):7.3f} ms  max {a.max():7.2f} ms  (n={a.size})"


def make_doc() -> tuple[Document, History, ToolController]:
    doc = Document()
    image = np.zeros(SHAPE, dtype=np.int16)
    image[:, 100:400, 100:400] = 80  # some structure for the threshold brush
    doc.set_image(Volume(image, spacing=SPACING))
    hist = History(doc)
    return doc, hist, ToolController(doc, hist)


def bench_moves(ctl: ToolController, brush: BrushSettings, axis: int, n_strokes: int, moves: int, rng) -> dict:
    ctl.brush = brush
    shape = ctl.document.mask.shape
    ra, ca = [a for a in range(3) if a != axis]
    t_press, t_move, t_release = [], [], []
    for _ in range(n_strokes):
        s = int(rng.integers(20, shape[axis] - 20))
        r, c = float(rng.integers(50, shape[ra] - 50)), float(rng.integers(50, shape[ca] - 50))
        t0 = time.perf_counter()
        ctl.press(axis, s, r, c)
        t_press.append(time.perf_counter() - t0)
        for _ in range(moves):  # mouse-move steps of ~3-8 voxels, like a 60 Hz drag
            r = float(np.clip(r + rng.uniform(-8, 8), 0, shape[ra] - 1))
            c = float(np.clip(c + rng.uniform(-8, 8), 0, shape[ca] - 1))
            t0 = time.perf_counter()
            ctl.move(axis, s, r, c)
            t_move.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ctl.release()
        t_release.append(time.perf_counter() - t0)
    return {"press": t_press, "move": t_move, "release": t_release}


def overlay_proxy(doc: Document, ctl: ToolController, rng, n: int = 300) -> tuple[list[float], list[float]]:
    """Time mapping the changed 2D region through a LUT after each dab (axial view)."""
    lut = np.asarray(doc.labels.lut(256))
    boxes: list = []
    doc.mask_changed.connect(boxes.append)
    ctl.brush = BrushSettings(size=5.0, unit="mm")
    t_region, t_slice = [], []
    for _ in range(n):
        k = int(rng.integers(0, SHAPE[0]))
        boxes.clear()
        ctl.press(0, k, float(rng.integers(20, 490)), float(rng.integers(20, 490)))
        ctl.release()
        if not boxes:
            continue
        (k0, _), (j0, j1), (i0, i1) = boxes[-1]
        t0 = time.perf_counter()
        rgba = lut[doc.mask[k0, j0:j1, i0:i1]]
        t_region.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rgba_full = lut[doc.mask[k0]]
        t_slice.append(time.perf_counter() - t0)
        assert rgba.shape[-1] == 4 and rgba_full.shape == (512, 512, 4)
    doc.mask_changed.disconnect(boxes.append)
    return t_region, t_slice


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=10_000, help="strokes for the history-memory run")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    reps = 20 if args.quick else 60

    doc, hist, ctl = make_doc()
    print(f"mask {SHAPE} uint8 ({doc.mask.nbytes / 2**20:.0f} MiB), spacing {SPACING} mm; numpy {np.__version__}")

    cases = [
        ("round 5 mm, 2D, axial", BrushSettings(size=5.0, unit="mm"), 0),
        ("round 20 vox, 2D, axial", BrushSettings(size=20), 0),
        ("round 40 vox, 2D, axial", BrushSettings(size=40), 0),
        ("square 9 vox, 2D, coronal", BrushSettings(size=9, shape="square"), 1),
        ("round 10 mm, 2D, sagittal", BrushSettings(size=10.0, unit="mm"), 2),
        ("round 10 mm, 3D sphere, axial", BrushSettings(size=10.0, unit="mm", mode="3d"), 0),
        ("round 10 mm, 2D, threshold", BrushSettings(size=10.0, unit="mm", threshold=(50, 100)), 0),
        ("eraser round 20 vox, 2D", BrushSettings(size=20), 0),
    ]
    print("\n== One brush move (dab + history capture + bbox bookkeeping + mask_changed emit) ==")
    all_moves: list[float] = []
    for name, brush, axis in cases:
        if name.startswith("eraser"):
            ctl.tool = "eraser"
        r = bench_moves(ctl, brush, axis, reps, 20, rng)
        ctl.tool = "brush"
        all_moves += r["move"]
        print(f"{name:32s} move: {stats(r['move'])}")
        print(f"{'':32s} press: {stats(r['press'])}")
        print(f"{'':32s} release (commit): {stats(r['release'])}")
    print(f"{'ALL moves':32s} {stats(all_moves)}")

    print("\n== Baseline: naive undo copying the whole mask at each stroke start ==")
    t_copy = []
    for _ in range(5):
        t0 = time.perf_counter()
        snap = doc.mask.copy()
        t_copy.append(time.perf_counter() - t0)
        del snap
    print(f"full-mask copy per stroke: {stats(t_copy)}")
    print(f"ratio naive copy / median move = {np.median(t_copy) / np.median(all_moves):.0f}x")

    print("\n== Overlay repaint proxy (changed 2D region through a 256x4 RGBA LUT) ==")
    t_region, t_slice = overlay_proxy(doc, ctl, rng)
    print(f"changed region (5 mm dab):   {stats(t_region)}")
    print(f"whole 512x512 slice:         {stats(t_slice)}")

    print(f"\n== History memory for {args.strokes} strokes (cap {DEFAULT_MAX_BYTES / 2**20:.0f} MiB) ==")
    doc2, hist2, ctl2 = make_doc()
    del doc, hist, ctl
    t0 = time.perf_counter()
    for n in range(args.strokes):
        axis = 0 if n % 5 else int(rng.integers(1, 3))
        ctl2.brush = BrushSettings(size=float(rng.choice([5, 10, 20])), unit="voxel", label=1 + n % 3)
        ctl2.tool = "eraser" if n % 7 == 0 else "brush"
        ra, ca = [a for a in range(3) if a != axis]
        s = int(rng.integers(0, SHAPE[axis]))
        r, c = float(rng.integers(0, SHAPE[ra])), float(rng.integers(0, SHAPE[ca]))
        ctl2.press(axis, s, r, c)
        for _ in range(5):
            r, c = r + rng.uniform(-10, 10), c + rng.uniform(-10, 10)
            ctl2.move(axis, s, r, c)
        ctl2.release()
    dt = time.perf_counter() - t0
    used = hist2.bytes_used
    print(f"{args.strokes} strokes in {dt:.1f} s; entries {hist2.undo_count} (dropped {hist2.dropped}); "
          f"history bytes_used {used:,} B = {used / 2**20:.2f} MiB = {used / max(1, hist2.undo_count):.0f} B/stroke")
    print(f"under the cap: {used <= hist2.max_bytes}")
    t0 = time.perf_counter()
    for _ in range(100):
        hist2.undo()
    t_undo = (time.perf_counter() - t0) / 100
    print(f"undo (mean of 100): {t_undo * 1e3:.3f} ms")

    print("\n== 'AI prediction' full-mask entry ==")
    new = np.zeros(SHAPE, np.uint8)
    kk, jj, ii = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    new[((kk - 200) / 120.0) ** 2 + ((jj - 256) / 150.0) ** 2 + ((ii - 256) / 150.0) ** 2 <= 1] = 1
    new[((kk - 200) / 40.0) ** 2 + ((jj - 256) / 50.0) ** 2 + ((ii - 256) / 60.0) ** 2 <= 1] = 2
    t0 = time.perf_counter()
    hist2.apply_full_mask(new, "AI prediction")
    t_apply = time.perf_counter() - t0
    entry = hist2._undo[-1]
    t0 = time.perf_counter()
    hist2.undo()
    t_u = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist2.redo()
    t_r = time.perf_counter() - t0
    print(f"apply_full_mask {t_apply * 1e3:.0f} ms, undo {t_u * 1e3:.0f} ms, redo {t_r * 1e3:.0f} ms; "
          f"entry {entry.nbytes / 2**20:.3f} MiB ({entry.codec}); bbox {entry.bbox}")

    print("\n== Autosave snapshot (background thread: zlib-1 of the live mask + atomic writes) ==")
    with tempfile.TemporaryDirectory() as tmp:
        j = Journal(doc2, home=Path(tmp))
        times = []
        for _ in range(3):
            doc2.notify_mask_changed(None)
            t0 = time.perf_counter()
            j.flush()
            times.append(time.perf_counter() - t0)
        size = sum(f.stat().st_size for f in j.last_folder.iterdir())
        print(f"snapshot {stats(times)}; on disk {size / 2**20:.2f} MiB")
        # GUI-thread brush moves while the autosave thread snapshots back to back,
        # against the same loop with no autosave thread
        ctl2.tool = "brush"
        for label, interval in (("no autosave thread", None), ("back-to-back autosaves", 0.0)):
            j2 = Journal(doc2, interval_s=interval or 0.0, home=Path(tmp))
            if interval is not None:
                j2.start()
            moves: list[float] = []
            t_end = time.perf_counter() + 3.0
            while time.perf_counter() < t_end:
                moves += bench_moves(ctl2, BrushSettings(size=20), 0, 5, 20, rng)["move"]
                time.sleep(0.016)  # the GUI thread idles between mouse events
            j2.stop()
            print(f"moves, 3 s, {label:24s} ({j2.writes:2d} snapshots): {stats(moves)}; "
                  f"p99 {np.percentile(moves, 99) * 1e3:.3f} ms")
    print("\n== One-shot ops on the full mask (each one undo entry) ==")
    doc3, hist3, ctl3 = make_doc()
    doc3.mask[:] = new
    doc3.mask[150:250, 200:300, 200:300][::3] = 0  # holes / gaps in label 1 and 2
    for k in range(120, 280):
        if k % 10:
            doc3.mask[k][doc3.mask[k] == 2] = 0  # label 2 drawn on every 10th slice only
    for name, op in (
        ("interpolate label 2 (axial)", lambda: ctl3.interpolate(0, 2)),
        ("fill holes label 1 (3D)", lambda: ctl3.fill_holes(1, mode="3d")),
        ("fill holes label 1 (2D, axial)", lambda: ctl3.fill_holes(1, mode="2d", axis=0)),
        ("flood fill one axial slice", lambda: ctl3.fill_at(0, 200, 5, 5)),
        ("flood fill one sagittal slice", lambda: ctl3.fill_at(2, 256, 5, 5)),
        ("merge label 2 into 1", lambda: ctl3.merge_labels(2, 1)),
        ("delete label 1", lambda: ctl3.delete_label(1)),
    ):
        t0 = time.perf_counter()
        bbox = op()
        t1 = time.perf_counter()
        hist3.undo()
        t2 = time.perf_counter()
        hist3.redo()
        print(f"{name:32s} {(t1 - t0) * 1e3:7.0f} ms (undo {(t2 - t1) * 1e3:5.0f} ms); bbox {bbox}")
    print(f"history after the one-shot ops: {hist3.bytes_used / 2**20:.2f} MiB")
    print(f"\n(pid {os.getpid()}, {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
