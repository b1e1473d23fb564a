"""Latencies the tests used to assert with timers, measured and printed instead.

Usage: .venv/bin/python bench/latency_bench.py [--repeats 5] [--skip-gui] [--skip-training]

Tests assert behaviour (the autosave happened, the GUI thread ran while a job computed, a
paused run stopped by itself); how *fast* each of these is belongs here:

1. autosave: an edit -> the background journal has it on disk (``Journal.up_to_date``),
   with the tests' 0.05 s interval and the app's default 2 s, on a small and a big mask;
2. one-shot mask ops in the real app (offscreen): the longest the GUI thread goes without
   processing events (a 5 ms QTimer probe) while Fill holes 3D / Interpolate compute in a
   worker, on a 200x256x256 mask;
3. fine-tuning: a pause request -> the paused report, a cleared pause -> the next step
   (in process), and ``stop()`` of a paused run in the training child process.

Figures are medians / maxima over ``--repeats`` runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _fmt(values_ms: list[float]) -> str:
    return f"median {statistics.median(values_ms):7.1f} ms, max {max(values_ms):7.1f} ms (n={len(values_ms)})"


def _wait(cond, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.001)
    return False


# ----- 1. autosave -------------------------------------------------------------------------------
def bench_autosave(repeats: int) -> None:
    from desktop_app.state.document import Document
    from desktop_app.state.history import History
    from desktop_app.state.journal import Journal
    from desktop_app.state.tools import ToolController
    from unet_engine.volume import Volume

    print("\n== Autosave: edit -> snapshot on disk (background journal thread) ==")
    for shape in ((6, 30, 40), (40, 256, 256)):
        for interval in (0.05, 2.0):
            if interval > 1 and repeats > 3:
                n = 3  # each takes up to the interval
            else:
                n = repeats
            with tempfile.TemporaryDirectory() as tmp:
                doc = Document()
                doc.set_image(Volume(np.zeros(shape, np.int16), source_path=Path(tmp) / "case.nii.gz"))
                ctl = ToolController(doc, History(doc))
                journal = Journal(doc, interval_s=interval, home=Path(tmp) / "home")
                journal.start()
                lat = []
                try:
                    for r in range(n):
                        k = r % shape[0]
                        ctl.press(0, k, 10 + r, 10)
                        ctl.move(0, k, 20 + r, 30)
                        ctl.release()
                        t0 = time.perf_counter()
                        if not _wait(lambda: journal.up_to_date, timeout=interval + 30):
                            print("  autosave did not happen")
                            break
                        lat.append((time.perf_counter() - t0) * 1000)
                finally:
                    journal.stop()
                if lat:
                    print(f"  mask {shape}, interval {interval:4.2f} s: {_fmt(lat)}; "
                          f"last write {1000 * (journal.last_write_s or 0):.1f} ms")


# ----- 2. GUI thread during one-shot ops -----------------------------------------------------------
def bench_gui_ops(repeats: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtWidgets

    from desktop_app.app import build_app
    from desktop_app.editing import editing_controller
    from unet_engine.volume import Volume

    print("\n== One-shot mask ops in the app: longest GUI-thread gap while the worker computes ==")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    parts = build_app(restore_layout=False)
    parts.window.resize(1200, 800)
    parts.window.show()
    parts.controller.ask_discard_changes = lambda: True
    ed = editing_controller(parts.window)
    shape = (200, 256, 256)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r2 = (k - 100) ** 2 + (j - 128) ** 2 + (i - 128) ** 2
    mask = ((r2 <= 90**2) & (r2 > 40**2)).astype(np.uint8)  # a ball with a big cavity
    mask[:20] = 0
    mask[180:] = 0
    disc = ((j - 128) ** 2 + (i - 128) ** 2 <= 60**2)[0]
    mask[19][disc] = 1
    mask[181][disc] = 1
    from desktop_app.state.intensity import intensity_stats  # what the controller does after a load

    vol = Volume(np.zeros(shape, np.int16), (1.0, 0.8, 0.8), (0.0, 0.0, 0.0), modality="CT")
    ops = {"fill holes 3d": lambda: ed.fill_holes("3d"), "interpolate": ed.interpolate}
    gaps: dict[str, list[float]] = {name: [] for name in ops}
    totals: dict[str, list[float]] = {name: [] for name in ops}
    try:
        for _ in range(repeats):
            for name, start in ops.items():
                parts.document.set_image(vol, mask.copy())
                parts.window_level.set_stats(intensity_stats(vol.array), vol.modality)
                ed.tools.brush.label = 1
                parts.grid.set_active("axial")
                app.processEvents()
                ticks: list[float] = []
                timer = QtCore.QTimer()
                timer.setInterval(5)
                timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
                t0 = time.perf_counter()
                timer.start()
                if not start():
                    print(f"  {name}: did not start")
                    continue
                ticks.append(time.perf_counter())  # the GUI-thread part of starting counts too
                while ed.op_running:
                    app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
                timer.stop()
                gaps[name].append(float(np.diff([t0] + ticks).max() * 1000))
                totals[name].append((time.perf_counter() - t0) * 1000)
    finally:
        parts.controller.workers.wait_idle(20_000)
        parts.controller.shutdown()
        parts.window.close()
    for name in ops:
        if gaps[name]:
            print(f"  {name:14s} on {shape}: op {statistics.median(totals[name]):6.0f} ms; "
                  f"longest GUI-thread gap {_fmt(gaps[name])}")


# ----- 3. fine-tuning pause / stop ---------------------------------------------------------------
def bench_training(repeats: int) -> None:
    from tests.train_helpers import make_dataset, tiny_config, tiny_model
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.jobs.training_process import start_training_process
    from unet_engine.training.fine_tune import StepReport, fine_tune

    print("\n== Fine-tuning: pause and stop latencies (tiny 2D network, hippocampus cases) ==")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = make_dataset(tmp, limit=3)
        to_paused, to_next = [], []
        for r in range(repeats):
            pause = threading.Event()
            marks: dict[str, float] = {}

            def on(rep, pause=pause, marks=marks):
                if not isinstance(rep, StepReport):
                    return
                if rep.step == 2 and not rep.paused and "set" not in marks:
                    marks["set"] = time.perf_counter()
                    pause.set()
                elif rep.paused:
                    marks["paused"] = time.perf_counter()
                    threading.Timer(0.3, lambda: (marks.__setitem__("clear", time.perf_counter()), pause.clear())).start()
                elif "clear" in marks and "next" not in marks:
                    marks["next"] = time.perf_counter()

            cfg = tiny_config(max_steps=4, steps_per_epoch=4, val_max_cases=1)
            run_generator(fine_tune(cfg, dataset=ds, registry=ModelRegistry(tmp / f"reg{r}"), from_version="scratch",
                                    pause=pause), on)
            to_paused.append((marks["paused"] - marks["set"]) * 1000)
            to_next.append((marks["next"] - marks["clear"]) * 1000)
        print(f"  in process, pause set -> paused report (state saved): {_fmt(to_paused)}")
        print(f"  in process, pause cleared -> next step report:          {_fmt(to_next)}")

        reg = ModelRegistry(tmp / "models")
        model, card = tiny_model(seed=1)
        reg.add_version(model, card, promote=True)
        stops = []
        for _ in range(max(1, repeats // 2)):
            proc = start_training_process(tiny_config(model_spec=None, max_steps=500), ds.folder, reg.root, None,
                                          num_threads=1)
            got: list = []
            while not got:
                got += proc.poll(timeout=0.1)
            proc.pause()
            while not any(getattr(x, "paused", False) for x in got):
                got += proc.poll(timeout=0.1)
            t0 = time.perf_counter()
            clean = proc.stop(60.0)
            stops.append((time.perf_counter() - t0) * 1000)
            if not clean:
                print("  a paused child did not stop by itself (terminated)")
        print(f"  child process, stop() of a paused run:                 {_fmt(stops)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-gui", action="store_true")
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    os.environ["SEGLOOP_HOME"] = tempfile.mkdtemp(prefix="segloop_latency_")
    import torch

    torch.set_num_threads(1)
    print(f"# latency bench: numpy {np.__version__}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    bench_autosave(args.repeats)
    if not args.skip_gui:
        bench_gui_ops(args.repeats)
    if not args.skip_training:
        bench_training(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
