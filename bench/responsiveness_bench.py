"""GUI responsiveness while the learning loop works: event-loop stalls during inference and fine-tuning.

Usage: .venv/bin/python bench/responsiveness_bench.py [--platform offscreen] [--train-seconds 20]
                                                      [--repeats 3] [--train-runs 2] [--no-thread-baseline]

The real app (``build_app``: main window, 3-up views, all panels docked, 1400x900) runs
offscreen. A QTimer probe fires every 5 ms on the GUI thread; the *stall* of a tick is how
late it fires (actual gap - 5 ms). Phases, all in the same process:

1. idle baseline (the app doing nothing but the probe, ``--idle-seconds``; repeated at the end);
2. inference on a real hippocampus case (MSD Task04, 35x51x35-ish), through the inference
   panel's code path (``InferenceController.run_inference``: worker + result applied as one
   undo step + uncertainty map + review stats), repeated;
3. inference on a bigger volume: the spleen CT of ``../shared/data/formats`` (512x512xN)
   or, with ``--big synthetic``, a 100x256x256 volume;
4. fine-tuning (``TrainingController.start_training``) on a dataset of real hippocampus
   cases for ``--train-seconds``: the app runs ``fine_tune`` in a spawned child *process*
   (``unet_engine.jobs.training_process``; torch threads = CPUs - 1) relayed by a thin worker thread;
5. unless ``--no-thread-baseline``: the same fine-tuning run the old way, ``fine_tune`` in a
   worker *thread* of the GUI process (``num_threads=1``), feeding the same panel -- the
   in-run baseline the process figures are compared with.

The model is a random-weight 2D U-Net of the default architecture (``ModelSpec()``: base
width 16, depth 4) unless the bundled default model exists (then that one). Timing is
what matters, not the masks. The target: no stall over 50 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HIPPO_SHARED = SHARED / "hippocampus"
HIPPO_TESTS = ROOT / "tests" / "data" / "hippocampus"
SPLEEN = SHARED / "formats" / "ct_spleen_nifti" / "image.nii.gz"
INTERVAL_MS = 5


class Probe:
    """Records how late each 5 ms QTimer tick fires on the GUI thread."""

    def __init__(self, QtCore) -> None:
        self.timer = QtCore.QTimer()
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self._tick)
        self.stalls: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.stalls.append(max(0.0, (now - self._last) * 1000.0 - INTERVAL_MS))
            if self.stalls[-1] > 50.0:
                self.big.append((now - self.t0, self.stalls[-1]))
        self._last = now

    def start(self) -> None:
        self.stalls, self._last = [], None
        self.big: list[tuple[float, float]] = []
        self.t0 = time.perf_counter()
        self.timer.start()

    def watch(self, threshold_ms: float = 40.0):
        """``--diagnose``: a thread that, while a tick is overdue, samples every thread's stack."""
        import threading
        import traceback
        from collections import Counter

        self.samples: Counter = Counter()
        gui = threading.main_thread().ident

        def loop() -> None:
            while True:
                time.sleep(0.005)
                last = self._last
                if last is None or (time.perf_counter() - last) * 1000.0 < threshold_ms:
                    continue
                for tid, frame in sys._current_frames().items():
                    if tid == threading.get_ident():
                        continue
                    stack = traceback.extract_stack(frame)[-4:]
                    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))
                    self.samples[("GUI" if tid == gui else "worker") + ": " + where] += 1

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return list(self.stalls)


def summary(name: str, stalls: list[float], seconds: float) -> str:
    a = np.asarray(stalls) if stalls else np.zeros(1)
    over = int(np.count_nonzero(a > 50.0))
    return (f"{name:<38} p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):7.2f} ms  "
            f"max {a.max():7.2f} ms  ticks {a.size:6d}  >50ms {over:3d}  ({seconds:.1f} s)")


def run_phase(app, probe, start, done, timeout_s: float = 600.0) -> tuple[list[float], float]:
    from PySide6 import QtCore

    probe.start()
    t0 = time.perf_counter()
    start()
    while not done() and time.perf_counter() - t0 < timeout_s:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        QtCore.QThread.msleep(1)  # the app's own event loop sleeps in the same way between events
    seconds = time.perf_counter() - t0
    return probe.stop(), seconds


def wait_events(app, seconds: float) -> None:
    from PySide6 import QtCore

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        QtCore.QThread.msleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default="offscreen")
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-runs", type=int, default=2, help="run 1 includes one-time warm-up (lazy imports)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="length of each idle baseline phase")
    ap.add_argument("--no-thread-baseline", action="store_true",
                    help="skip the old in-process training thread run (the in-run baseline)")
    ap.add_argument("--diagnose", action="store_true", help="sample stacks during stalls > 40 ms")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", args.platform)
    home = Path(tempfile.mkdtemp(prefix="segloop_resp_"))
    os.environ["SEGLOOP_HOME"] = str(home)

    import torch
    from PySide6 import QtWidgets

    from desktop_app.app import build_app
    from unet_engine.model.checkpoint import ModelCard, save_checkpoint
    from unet_engine.data.importing import import_msd
    from unet_engine.io.volume_io import read_volume
    from unet_engine.model.network import ModelSpec, build_model
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.volume import Volume

    hippo = HIPPO_SHARED if (HIPPO_SHARED / "imagesTr").is_dir() else HIPPO_TESTS
    cases = sorted((hippo / "imagesTr").glob("*.nii.gz"))
    if not cases:
        print("no hippocampus cases found; skipping")
        return 0
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    parts = build_app(restore_layout=False)  # settings live in $SEGLOOP_HOME (a temp folder)
    parts.window.resize(1400, 900)
    parts.window.show()
    parts.controller.ask_discard_changes = lambda: True
    inf, tr, vc, session = parts.inference, parts.training, parts.versions, parts.session
    if (BUNDLED_MODELS / "default" / "card.json").is_file():
        session.registry.ensure_default()
        model_note = "bundled default model"
    else:
        torch.manual_seed(0)
        spec = ModelSpec()
        ckpt = save_checkpoint(build_model(spec), ModelCard(spec=spec, labels={0: "background", 1: "anterior",
                                                                               2: "posterior"}), home / "bench_model")
        session.registry.import_checkpoint(ckpt, promote=True)
        model_note = f"random-weight 2D U-Net {spec.base_width}x{spec.depth}"
    inf.refresh_model()
    vc.refresh_versions()
    probe = Probe(__import__("PySide6.QtCore", fromlist=["QtCore"]))

    def open_volume(vol: Volume) -> None:
        parts.controller.scan_checks.record(vol, {})  # measured: inference, not the modality question
        parts.document.set_image(vol)
        wait_events(app, 0.5)

    print(f"# responsiveness bench: {model_note}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"device {inf.panel.device_label.text()}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    results = []
    if args.diagnose:
        probe.watch()
    idle, secs = run_phase(app, probe, lambda: None, lambda: False, timeout_s=args.idle_seconds)
    results.append(summary("idle baseline", idle, secs))

    small = read_volume(cases[-1])
    open_volume(small)
    all_small = []
    t_small = 0.0
    for _ in range(args.repeats):
        s, secs = run_phase(app, probe, inf.run_inference, lambda: inf.worker is None)
        all_small += s
        t_small += secs
    results.append(summary(f"inference {small.shape} x{args.repeats}", all_small, t_small))

    bigs = [read_volume(SPLEEN)] if SPLEEN.is_file() else []
    rng = np.random.default_rng(0)
    bigs.append(Volume((rng.normal(0, 1, (100, 256, 256)) * 100).astype(np.int16), spacing=(2.0, 1.0, 1.0)))
    for big in bigs:
        open_volume(big)
        s, secs = run_phase(app, probe, inf.run_inference, lambda: inf.worker is None)
        results.append(summary(f"inference {big.shape}", s, secs))
    s, secs = run_phase(app, probe, lambda: inf.run_inference("slice"), lambda: inf.worker is None)
    results.append(summary(f"inference {big.shape} one slice", s, secs))

    import_msd(hippo, session.dataset_folder, labels={1: "anterior", 2: "posterior"}, limit=min(len(cases), 12))
    open_volume(small)
    tr.base_config = tr.base_config.replace(max_minutes=args.train_seconds / 60.0, validate_at_start=True,
                                            steps_per_epoch=25, val_max_cases=2, batch_size=8)
    tr.panel.set_budget("minutes", 1)
    tr.training_config = lambda: tr.base_config  # the bench's budget in seconds

    def cancel_when_done() -> bool:
        return tr.worker is None

    from unet_engine.jobs.training_process import default_train_threads

    proc_stalls: list[float] = []
    for run in range(1, args.train_runs + 1):
        if args.diagnose:
            probe.samples.clear()  # the stacks printed below are the last fine-tuning phase's
        tr.last_train = None
        s, secs = run_phase(app, probe, tr.start_training, cancel_when_done, timeout_s=args.train_seconds + 120)
        proc_stalls += s
        steps = tr.last_train.steps if tr.last_train is not None else "?"
        results.append(summary(f"fine-tune process run {run} ({steps} st, {default_train_threads()} thr)", s, secs))
    if not args.no_thread_baseline:
        from unet_engine.progress import CancelToken
        from unet_engine.data.dataset import RetrainingDataset
        from unet_engine.registry.versions import ModelRegistry
        from unet_engine.training.fine_tune import fine_tune

        def thread_job(config, folder, root, cancel):
            return (yield from fine_tune(config, dataset=RetrainingDataset(folder), registry=ModelRegistry(root),
                                         cancel=cancel))

        box: dict = {}

        def start_thread_run() -> None:
            tr.panel.reset()
            tr.panel.set_running(True)
            box["done"], box["res"] = False, None
            parts.controller.workers.start(
                thread_job, tr.base_config.replace(num_threads=1), session.dataset_folder, session.registry.root,
                CancelToken(), description="Fine-tuning (thread baseline)",
                on_progress=tr._on_report, on_result=lambda r: box.update(res=r),
                on_finished=lambda: box.update(done=True))

        s, secs = run_phase(app, probe, start_thread_run, lambda: box.get("done", False),
                            timeout_s=args.train_seconds + 120)
        tr.panel.set_running(False)
        steps = box["res"].steps if box.get("res") is not None else "?"
        results.append(summary(f"fine-tune THREAD baseline ({steps} st, 1 thr)", s, secs))
        if proc_stalls and s:
            p = np.asarray(proc_stalls)
            t = np.asarray(s)
            results.append(f"process vs thread: max {p.max():.1f} vs {t.max():.1f} ms, "
                           f"p99 {np.percentile(p, 99):.1f} vs {np.percentile(t, 99):.1f} ms, "
                           f">50ms ticks {int((p > 50).sum())} vs {int((t > 50).sum())}")
    idle, secs = run_phase(app, probe, lambda: None, lambda: False, timeout_s=args.idle_seconds)
    results.append(summary("idle baseline (again, at the end)", idle, secs))
    print("\n".join(results))
    if args.diagnose:
        print("stalls > 50 ms in the fine-tuning phase (s after start, ms):",
              ", ".join(f"{t:.2f}s:{ms:.0f}" for t, ms in probe.big))
        for where, n in probe.samples.most_common(25):
            print(f"{n:5d}  {where}")
    print(f"# load average at the end: {os.getloadavg()[0]:.1f}")
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
