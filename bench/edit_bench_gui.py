"""GUI editing benchmark: brush move event -> repainted label overlay, through the real app.

Usage: .venv/bin/python bench/edit_bench_gui.py [--moves 200] [--platform offscreen]

Full main window (1400x900, 3-up layout, tool + label panels docked), 512x512x400 int16
CT-like scan + uint8 mask with three structures, brush tool active. Each sample sends one
real ``QMouseEvent`` (MouseMove, left button held) to the axial view's viewport with
``QApplication.sendEvent`` and processes events until the axial overlay ImageItem has
been re-rendered and painted (its QImage replaced), so the whole path is timed: canvas
event -> SliceView.voxel_dragged -> ViewInteraction -> ToolController.move (dab, history
capture) -> document.mask_changed(bbox) -> overlay slice through the label LUT ->
setImage -> render -> paint; the brush outline moves in the same event.

Strokes run away from the crosshair (only the axial overlay redraws) and, separately,
along its horizontal line (the coronal overlay redraws too).

Baseline in the same process: pyqtgraph's own painting, ``ImageItem.drawAt`` with a
round kernel on a 512x512 label slice shown through the same LUT in a view of the same
size (the "displayed array is the mask" pattern the architecture avoids; no undo, no 3D).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench.synthetic_ct import SHAPE, SPACING  # noqa: E402
from bench.synthetic_ct import make_ct as _make_ct  # noqa: E402


def make_ct(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The shared synthetic CT with one organ and the spine (the volume these figures used)."""
    return _make_ct(seed, second_organ=False)


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (f"median {np.median(a):6.2f} ms   p95 {np.percentile(a, 95):6.2f} ms   "
            f"max {a.max():6.2f} ms   (n={a.size})")


def wait_painted(app, items, before, limit_s: float = 2.0) -> None:
    """Process events until every item's QImage differs from ``before`` (render + paint)."""
    deadline = time.perf_counter() + limit_s
    while True:
        app.processEvents()
        if all(it.qimage is not None and it.qimage is not b and not it._renderRequired for it, b in zip(items, before)):
            return
        if time.perf_counter() > deadline:
            raise RuntimeError("overlay was not repainted")


def mouse(kind, pos, button_down: bool):
    from PySide6 import QtCore, QtGui

    left = QtCore.Qt.MouseButton.LeftButton
    no = QtCore.Qt.MouseButton.NoButton
    types = {"press": QtCore.QEvent.Type.MouseButtonPress, "move": QtCore.QEvent.Type.MouseMove,
             "release": QtCore.QEvent.Type.MouseButtonRelease}
    button = left if kind in ("press", "release") else no
    buttons = left if button_down else no
    p = QtCore.QPointF(pos)
    return QtGui.QMouseEvent(types[kind], p, p, button, buttons, QtCore.Qt.KeyboardModifier.NoModifier)


def bench_app(app, moves: int) -> dict[str, list[float]]:
    from PySide6 import QtWidgets

    from desktop_app.app import build_app
    from desktop_app.editing import editing_controller
    from desktop_app.settings import Settings
    from desktop_app.state.intensity import intensity_stats
    from unet_engine.volume import Volume

    vol_arr, mask = make_ct()
    vol = Volume(vol_arr, SPACING, (0.0, 0.0, 0.0), modality="CT")
    parts = build_app(Settings(Path(os.environ.get("TMPDIR", "/tmp")) / "segloop_edit_bench_gui.ini"),
                      restore_layout=False)
    parts.window.resize(1400, 900)
    parts.window.show()
    app.processEvents()
    parts.document.set_image(vol, mask)
    parts.window_level.set_stats(intensity_stats(vol_arr), "CT")
    ed = editing_controller(parts.window)
    ed.set_tool("brush")
    for _ in range(10):
        app.processEvents()
    doc = parts.document
    views = parts.grid.views
    axial = views["axial"]
    vp = axial.canvas.viewport()
    g = axial.geometry_info
    print(f"axial view {vp.width()}x{vp.height()} px for {g.n_cols}x{g.n_rows} voxels, "
          f"crosshair at {doc.cursor}")

    def pos(j: float, i: float):
        x, y = g.crosshair_mm((doc.cursor[0], j, i))
        return axial.display_to_widget(y / g.row_spacing, x / g.col_spacing)

    out: dict[str, list[float]] = {}
    configs = [
        ("round 5 vox, 2D", dict(shape="round", size=5, unit="voxel", mode="2d")),
        ("round 20 vox, 2D", dict(shape="round", size=20, unit="voxel", mode="2d")),
        ("round 10 mm, 3D sphere", dict(shape="round", size=10, unit="mm", mode="3d")),
        ("square 9 vox, threshold paint", dict(shape="square", size=9, unit="voxel", mode="2d")),
    ]
    k0, j0, i0 = doc.cursor
    strokes_done = 0
    for name, cfg in configs:
        b = ed.tools.brush
        for key, value in cfg.items():
            setattr(b, key, value)
        b.threshold = (0.0, 200.0) if "threshold" in name else None
        ed.tool_panel.sync_from_brush()
        for across in (False, True):
            items = [views[p].overlay_item for p in (("axial", "coronal") if across else ("axial",))]
            samples: list[float] = []
            n = 0
            while len(samples) < moves:
                # strokes of 20 moves inside the body; away from the crosshair: rows 150-210,
                # columns 150-210 (crosshair at 256, 256); across: along the crosshair row
                row = 150 + (n % 6) * 12 if not across else j0
                col0 = 150 if not across else i0 - 60
                strokes_done += 1
                ed.tools.brush.label = 2 + strokes_done % 200  # a new value each stroke: every dab changes voxels
                QtWidgets.QApplication.sendEvent(vp, mouse("press", pos(row, col0), True))
                app.processEvents()
                for m in range(1, 21):
                    # a 3-voxel step per move, so every move paints new voxels
                    target = pos(row + (m % 2), col0 + 3 * m) if not across else pos(j0 + (m % 3) - 1, col0 + 6 * m)
                    before = [it.qimage for it in items]
                    t0 = time.perf_counter()
                    QtWidgets.QApplication.sendEvent(vp, mouse("move", target, True))
                    try:
                        wait_painted(app, items, before)
                    except RuntimeError:
                        raise RuntimeError(f"{name} across={across} stroke {n} move {m}: no repaint "
                                           f"(redraws {axial.redraws}, stroke {ed.tools.stroke_active})") from None
                    dt = (time.perf_counter() - t0) * 1e3
                    if n >= 1:  # first stroke of each config = warm-up
                        samples.append(dt)
                QtWidgets.QApplication.sendEvent(vp, mouse("release", target, False))
                app.processEvents()
                n += 1
            where = "along the crosshair line (axial + coronal redraw)" if across else "axial overlay only"
            out[f"{name}, {where}"] = samples[:moves]
    # undo of a stroke -> repainted (through the QAction)
    samples = []
    for _ in range(min(moves, ed.history.undo_count)):
        before = [axial.overlay_item.qimage]
        t0 = time.perf_counter()
        parts.window.named_actions["undo"].trigger()
        wait_painted(app, [axial.overlay_item], before)
        samples.append((time.perf_counter() - t0) * 1e3)
    out["Undo stroke (Ctrl+Z action) -> repainted"] = samples
    # the state layer alone, same kind of moves, no views connected
    from desktop_app.state.document import Document
    from desktop_app.state.history import History
    from desktop_app.state.tools import ToolController

    d2 = Document()
    d2.set_image(vol, mask.copy())
    ctl = ToolController(d2, History(d2))
    ctl.brush.size = 5
    ctl.brush.label = 2
    samples = []
    for n in range(moves // 20 + 1):
        ctl.press(0, k0, 150 + (n % 6) * 12, 150)
        for m in range(1, 21):
            t0 = time.perf_counter()
            ctl.move(0, k0, 150 + (n % 6) * 12 + (m % 2), 150 + 3 * m)
            samples.append((time.perf_counter() - t0) * 1e3)
        ctl.release()
    out["(state only) ToolController.move, round 5 vox, no views"] = samples[:moves]
    parts.controller.ask_discard_changes = lambda: True  # no modal question on close
    parts.window.close()
    parts.controller.shutdown()
    return out


def bench_baseline(app, moves: int, size_px: tuple[int, int]) -> list[float]:
    """pyqtgraph ImageItem.drawAt on a 512x512 label slice through a LUT."""
    import pyqtgraph as pg

    from desktop_app.state.labels import LabelTable

    _vol, mask = make_ct()
    labels = mask[200].copy()
    table = LabelTable()
    table.ensure([1, 2, 3])
    lut = np.asarray(table.lut(256))
    win = pg.GraphicsLayoutWidget()
    win.resize(*size_px)
    vb = win.addViewBox(lockAspect=True, invertY=True)
    item = pg.ImageItem(labels, axisOrder="row-major", levels=(0, 255))
    item.setLookupTable(lut)
    item.setOpacity(0.5)
    vb.addItem(item)
    win.show()
    app.processEvents()
    r = 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = ((yy**2 + xx**2) <= (r + 0.5) ** 2).astype(np.uint8) * 2
    item.setDrawKernel(kernel, mask=(kernel > 0).astype(np.uint8), center=(r, r), mode="set")
    from PySide6 import QtCore

    samples = []
    for n in range(moves + 20):
        before = [item.qimage]
        p = QtCore.QPointF(40 + 3 * (n % 140), 60 + (n // 140) * 12)
        t0 = time.perf_counter()
        item.drawAt(p)
        wait_painted(app, [item], before)
        if n >= 20:
            samples.append((time.perf_counter() - t0) * 1e3)
    win.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=200, help="timed moves per configuration")
    parser.add_argument("--platform", default=None, help="QT_QPA_PLATFORM (default: offscreen unless set)")
    args = parser.parse_args()
    if args.platform:
        os.environ["QT_QPA_PLATFORM"] = args.platform
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    from desktop_app.app import configure_pyqtgraph

    configure_pyqtgraph()
    print(f"volume {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} int16 + uint8 mask, platform {app.platformName()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    res = bench_app(app, args.moves)
    width = max(map(len, res))
    for name, ms in res.items():
        print(f"{name:<{width}}  {stats(ms)}")
    base = bench_baseline(app, args.moves, (900, 850))
    print(f"{'BASELINE pyqtgraph ImageItem.drawAt (512x512 labels + LUT)':<{width}}  {stats(base)}")
    ours = np.median(res["round 5 vox, 2D, axial overlay only"])
    print(f"brush move -> repaint, round 5 vox: {ours:.2f} ms median vs drawAt {np.median(base):.2f} ms "
          f"({np.median(base) / ours:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
