"""Viewer benchmark: time to show a new slice with the label overlay, and open-to-first-image.

Usage: .venv/bin/python bench/viewer_bench.py [--repeats 60] [--skip-open]
       [--workdir DIR (default: segloop_bench in the temp folder)]

1. Slice change, 512x512x400 int16 CT-like volume + uint8 mask with structure, full main
   window offscreen (1400x900, 3-up layout, overlay filled in all three views). Each
   sample changes the slice and processes events until every changed ImageItem has been
   re-rendered and painted (its QImage replaced), so extraction, LUT mapping, setImage,
   render and the paint are all inside the timing:
   * one view scrolls one slice (wheel / arrow key) - per plane;
   * a click in the axial view (coronal + sagittal change slice);
   * a 3D cursor jump (all three views change slice).
   Baseline in the same process: a naive pyqtgraph ``ImageView.setImage(slice)`` (default
   autoLevels/autoRange) of the same axial slices, no overlay.
2. Open to first image for a ~100 MB .nii.gz (512x512x400 int16, generated once into
   --workdir): ``controller.open_scan`` -> first painted axial slice, with the worker's
   read time; baseline: plain ``nibabel.load(...).get_fdata(dtype=float32)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench.synthetic_ct import SHAPE, SPACING, make_ct  # noqa: E402
from PySide6 import QtWidgets  # noqa: E402

BASELINE = "BASELINE ImageView.setImage(axial slice), autoLevels, no overlay"


CPU: dict[str, list[float]] = {}  # GUI-thread CPU time per sample, same keys as the wall times


def stats(ms: list[float], cpu: list[float] | None = None) -> str:
    a = np.asarray(ms)
    text = f"median {np.median(a):6.2f} ms   p95 {np.percentile(a, 95):6.2f} ms"
    if cpu:
        text += f"   | GUI-thread CPU median {np.median(cpu):6.2f} ms"
    return text + f"   (n={a.size})"


def wait_painted(app, items, before, limit_s: float = 2.0) -> None:
    """Process events until every item's QImage differs from ``before`` (render + paint)."""
    deadline = time.perf_counter() + limit_s
    while True:
        app.processEvents()
        if all(it.qimage is not None and it.qimage is not b and not it._renderRequired for it, b in zip(items, before)):
            return
        if time.perf_counter() > deadline:
            raise RuntimeError("views were not repainted")


def bench_slices(app, repeats: int) -> dict[str, list[float]]:
    from desktop_app.app import build_app
    from desktop_app.settings import Settings
    from desktop_app.state.intensity import intensity_stats
    from unet_engine.volume import Volume

    vol_arr, mask = make_ct()
    vol = Volume(vol_arr, SPACING, (0.0, 0.0, 0.0), modality="CT")
    parts = build_app(Settings(Path(tempfile.gettempdir()) / "segloop_bench_gui.ini"), restore_layout=False)
    parts.controller.ask_discard_changes = lambda: True
    parts.window.resize(1400, 900)
    parts.window.show()
    app.processEvents()
    parts.document.set_image(vol, mask)
    parts.window_level.set_stats(intensity_stats(vol_arr), "CT")
    for _ in range(5):
        app.processEvents()
    views = parts.grid.views
    print("window %dx%d, view canvases: %s" % (parts.window.width(), parts.window.height(), ", ".join(
        f"{p} {v.canvas.width()}x{v.canvas.height()}" for p, v in views.items())))
    items = {p: [v.image_item, v.overlay_item] for p, v in views.items()}
    doc = parts.document
    out: dict[str, list[float]] = {}
    rng = np.random.default_rng(1)

    def other(current: int, lo: int, hi: int) -> int:
        v = int(rng.integers(lo, hi))
        return v if v != current else v + 1

    cpu_now: list[float] = []

    def timed(change, planes, only_overlay: bool = False) -> float:
        its = [it for p in planes for it in items[p][(1 if only_overlay else 0):]]
        before = [it.qimage for it in its]
        c0 = time.thread_time()
        t0 = time.perf_counter()
        change()
        wait_painted(app, its, before)
        cpu_now.append((time.thread_time() - c0) * 1e3)
        return (time.perf_counter() - t0) * 1e3

    def record(name: str, samples: list[float]) -> None:
        out[name] = samples
        CPU[name] = cpu_now[-len(samples):]
        cpu_now.clear()

    for plane in ("axial", "coronal", "sagittal"):
        view = views[plane]
        n = view.geometry_info.n_slices
        samples = []
        for r in range(repeats + 5):
            step = 1 if view.slice_index < n - 2 else -(n // 2)
            dt = timed(lambda: view.step_slice(step), [plane])
            if r >= 5:  # warm-up
                samples.append(dt)
        record(f"scroll one slice, {plane} ({view.image_item.image.shape[1]}x{view.image_item.image.shape[0]})", samples)
    samples = []
    for r in range(repeats + 5):
        k, j, i = doc.cursor
        target = (k, other(j, 100, 400), other(i, 100, 400))
        dt = timed(lambda: doc.set_cursor(target), ["coronal", "sagittal"])
        if r >= 5:
            samples.append(dt)
    record("click in axial (coronal + sagittal redraw)", samples)
    samples = []
    for r in range(repeats + 5):
        k, j, i = doc.cursor
        target = (other(k, 50, 350), other(j, 100, 400), other(i, 100, 400))
        dt = timed(lambda: doc.set_cursor(target), ["axial", "coronal", "sagittal"])
        if r >= 5:
            samples.append(dt)
    record("3D cursor jump (all three views redraw)", samples)
    # redraw on an edit: a brush-sized bbox on the current axial slice (mask_changed)
    samples = []
    for r in range(repeats + 5):
        k, j, i = doc.cursor
        doc.mask[k, j - 5 : j + 5, i - 5 : i + 5] = 1 + (r % 2)
        dt = timed(lambda: doc.notify_mask_changed(((k, k + 1), (j - 5, j + 5), (i - 5, i + 5))),
                   ["axial"], only_overlay=True)
        if r >= 5:
            samples.append(dt)
    record("mask edit on the axial slice (axial overlay only)", samples)
    parts.controller.shutdown()
    parts.window.close()

    # baseline: naive ImageView with default autoLevels/autoRange, same axial slices
    import pyqtgraph as pg

    imv = pg.ImageView()
    imv.resize(900, 900)
    imv.show()
    imv.setImage(vol_arr[200])
    app.processEvents()
    samples, cpu = [], []
    for r in range(repeats + 5):
        k = 100 + r
        before = imv.imageItem.qimage
        c0 = time.thread_time()
        t0 = time.perf_counter()
        imv.setImage(vol_arr[k])
        wait_painted(app, [imv.imageItem], [before])
        if r >= 5:
            samples.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
    out[BASELINE] = samples
    CPU[BASELINE] = cpu
    imv.close()
    return out


def make_nifti(workdir: Path) -> Path:
    import nibabel as nib

    path = workdir / "ct_512x512x400.nii.gz"
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    vol, _ = make_ct(seed=3)
    affine = np.diag([-SPACING[2], -SPACING[1], SPACING[0], 1.0])  # RAS, like most NIfTI CT
    img = nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def bench_open(app, workdir: Path, repeats: int = 3) -> dict[str, float]:
    import nibabel as nib

    from desktop_app.app import build_app
    from desktop_app.settings import Settings

    path = make_nifti(workdir)
    out: dict[str, float] = {"compressed MB": path.stat().st_size / 1e6}
    firsts, reads, base, set_times = [], [], [], []
    for _ in range(repeats):
        parts = build_app(Settings(workdir / "gui.ini"), restore_layout=False)
        parts.controller.ask_discard_changes = lambda: True
        parts.window.resize(1400, 900)
        parts.window.show()
        app.processEvents()
        item = parts.grid.views["axial"].image_item
        reads_now: list[float] = []
        set_image = parts.document.set_image

        def timed_set_image(*a, **k):  # how long the document takes (label scan of the mask)
            t = time.perf_counter()
            set_image(*a, **k)
            set_times.append(time.perf_counter() - t)

        parts.document.set_image = timed_set_image
        parts.controller.scan_opened.connect(lambda _v: None)
        t0 = time.perf_counter()
        worker = parts.controller.open_scan(path)
        worker.returned.connect(lambda res: reads_now.append(res.seconds))
        while not (item.qimage is not None and not item._renderRequired):
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"no image after 120 s: {parts.controller.last_error}")
        firsts.append(time.perf_counter() - t0)
        parts.controller.workers.wait_idle(10_000)
        reads.append(reads_now[0] if reads_now else float("nan"))
        parts.controller.shutdown()
        parts.window.close()
        parts.document.image = None
        t0 = time.perf_counter()
        np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
        base.append(time.perf_counter() - t0)
    out["open -> first painted image, s (median)"] = float(np.median(firsts))
    out["  of which worker read + stats, s (median)"] = float(np.median(reads))
    out["  of which Document.set_image on GUI thread, s"] = float(np.median(set_times))
    out["BASELINE nibabel get_fdata(float32), s (median)"] = float(np.median(base))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segloop_bench")
    parser.add_argument("--skip-open", action="store_true")
    args = parser.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    from desktop_app.app import configure_pyqtgraph

    configure_pyqtgraph()
    print(f"volume {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} int16 + uint8 mask, overlay filled in all views, "
          f"platform {app.platformName()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    res = bench_slices(app, args.repeats)
    width = max(map(len, res))
    for name, ms in res.items():
        print(f"{name:<{width}}  {stats(ms, CPU.get(name))}")
    axial_key = next(k for k in res if k.startswith("scroll one slice, axial"))
    print(f"axial scroll with overlay vs naive ImageView without overlay: "
          f"{np.median(res[BASELINE]) / np.median(res[axial_key]):.2f}x faster (wall), "
          f"{np.median(CPU[BASELINE]) / np.median(CPU[axial_key]):.2f}x (GUI-thread CPU)")
    if not args.skip_open:
        for name, value in bench_open(app, args.workdir).items():
            print(f"{name:<50} {value:8.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
