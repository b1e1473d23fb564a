"""The 3D surface view (desktop_app.viewer.surface_view) and the 4-up layout.

Under the tests' ``QT_QPA_PLATFORM=offscreen`` there is no OpenGL: the view must say so
and never create a GL widget. The rendering itself is checked in a subprocess under
``xvfb-run`` (Mesa's software OpenGL), on a real hippocampus label.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtOpenGLWidgets import QOpenGLWidget

from desktop_app.viewer.surface_view import opengl_unavailable_reason
from tests.gui_helpers import make_ct_volume, show_volume

ROOT = Path(__file__).resolve().parents[1]


def test_offscreen_has_no_opengl_and_the_4up_view_says_why(segloop_app, qtbot):
    parts = segloop_app
    assert "offscreen" in opengl_unavailable_reason()
    grid, a = parts.grid, parts.window.named_actions
    sv = grid.surface_view
    assert not sv.isVisible()  # 3-up stays the default: nothing 3D is built
    vol, mask = make_ct_volume()
    show_volume(parts, vol, mask)
    a["layout_4up"].trigger()
    assert grid.layout_name == "4-up" and a["layout_4up"].isChecked()
    assert sv.isVisible() and all(v.isVisible() for v in grid.views.values())
    assert sv.gl_view is None and "offscreen" in sv.unavailable_reason
    assert sv.placeholder.isVisible() and "unavailable" in sv.placeholder.text()
    assert not sv.findChildren(QOpenGLWidget)
    # edits, label changes, a new scan and reset zoom do nothing harmful (and build nothing)
    parts.document.mask[3:5, 10:12, 12:14] = 2
    parts.document.notify_mask_changed(((3, 5), (10, 12), (12, 14)))
    parts.document.labels.set_colour(1, (0, 0, 255))
    parts.document.labels.set_visible(1, False)
    show_volume(parts, vol, np.zeros_like(mask))
    a["reset_zoom"].trigger()
    qtbot.wait(300)  # past the debounce
    assert not sv.is_building and sv.builds == 0
    # slice views keep working in 4-up: cycling stays in the layout
    order = ["axial", "coronal", "sagittal"]
    before = grid.active_plane
    a["next_view"].trigger()
    assert grid.layout_name == "4-up" and grid.active_plane == order[(order.index(before) + 1) % 3]
    assert grid.visible_planes() == ["axial", "coronal", "sagittal"]
    a["layout_3up"].trigger()
    assert grid.layout_name == "3-up" and not sv.isVisible()
    grid.set_layout("4-up")
    assert sv.isVisible() and sv.placeholder.isVisible()


def test_surface_view_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("SEGLOOP_NO_3D", "1")
    assert "SEGLOOP_NO_3D" in opengl_unavailable_reason()


_RENDER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    ROOT = Path(sys.argv[1])
    import numpy as np
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets
    from desktop_app.state.document import Document
    from desktop_app.viewer.view_grid import ViewGrid
    from unet_engine.io.volume_io import read_volume

    app = QtWidgets.QApplication([])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    doc = Document()
    grid = ViewGrid(doc)
    grid.resize(900, 700)
    grid.show()
    grid.set_layout("4-up")
    hippo = ROOT / "tests" / "data" / "hippocampus"
    img = read_volume(hippo / "imagesTr" / "hippocampus_003.nii.gz")
    lab = read_volume(hippo / "labelsTr" / "hippocampus_003.nii.gz")
    doc.set_image(img, lab.array.astype(np.uint8))
    sv = grid.surface_view

    def wait_build(done):
        t0 = time.time()
        while (sv.builds <= done or not sv.wait_idle(100)) and time.time() - t0 < 60:
            app.processEvents()
            QtCore.QThread.msleep(10)

    def share(rgba, ch):  # pixels clearly of colour channel ch (shaded: any brightness)
        c = rgba[..., :3].astype(int)
        others = c[..., [x for x in range(3) if x != ch]].max(axis=-1)
        return float(((c[..., ch] > 50) & (c[..., ch] > 3 * others)).mean())

    def shot():
        a = sv.render_image(320, 240)
        return {"red": share(a, 0), "green": share(a, 1), "blue": share(a, 2)}

    def brightness(ch):  # mean value of channel ch where it dominates (0 when nowhere)
        c = sv.render_image(320, 240)[..., :3].astype(float)
        on = c[..., ch] > 2 * c[..., [x for x in range(3) if x != ch]].max(axis=-1) + 5
        return float(c[..., ch][on].mean()) if on.any() else 0.0

    out = {"reason": sv.unavailable_reason}
    wait_build(0)
    out["first"] = dict(shot(), builds=sv.builds, items=sorted(sv.items))
    builds = sv.builds
    mask = doc.mask
    box = tuple((int(x.min()), int(x.max()) + 1) for x in np.nonzero(mask == 2))
    mask[mask == 2] = 0  # erase label 2 (green)
    doc.notify_mask_changed(box)
    wait_build(builds)
    out["erased"] = dict(shot(), builds=sv.builds - builds, items=sorted(sv.items),
                         seconds=sv.last_build_seconds)
    builds = sv.builds
    doc.labels.set_colour(1, (0, 0, 255))
    out["recoloured"] = dict(shot(), builds=sv.builds - builds, bright=brightness(2))
    doc.labels.set_opacity(1, 0.35)  # translucent: blended over the black background
    out["translucent"] = dict(shot(), bright=brightness(2), builds=sv.builds - builds)
    doc.labels.set_opacity(1, 1.0)  # and back: the next frames draw (and clear depth) as before
    out["opaque_again"] = dict(bright=brightness(2))
    doc.labels.set_visible(1, False)
    out["hidden"] = shot()
    print("RESULT " + json.dumps(out))
    grid.detach()
""")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed (apt install xvfb)")
def test_renders_a_real_label_under_xvfb(tmp_path):
    script = tmp_path / "render_surface.py"
    script.write_text(_RENDER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["QT_QPA_PLATFORM"] = "xcb"
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(script), str(ROOT)],
                          capture_output=True, text=True, timeout=240, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["reason"] is None
    first = out["first"]
    # labels 1 (red) and 2 (green) of the label table, both drawn, nothing blue
    assert first["items"] == [1, 2] and first["red"] > 0.02 and first["green"] > 0.01 and first["blue"] == 0
    erased = out["erased"]  # one incremental rebuild: label 2's mesh is gone, label 1 stays
    assert erased["builds"] == 1 and erased["items"] == [1]
    assert erased["green"] == 0 and erased["red"] > 0.02
    recoloured = out["recoloured"]  # colour from the label table, no rebuild
    assert recoloured["builds"] == 0 and recoloured["red"] == 0 and recoloured["blue"] > 0.02
    translucent, again = out["translucent"], out["opaque_again"]  # opacity from the label table, no rebuild
    assert translucent["builds"] == 0 and translucent["blue"] > 0 and translucent["red"] == 0
    assert translucent["bright"] < 0.6 * recoloured["bright"]
    assert again["bright"] == pytest.approx(recoloured["bright"], rel=0.05)
    hidden = out["hidden"]
    assert hidden["red"] == hidden["green"] == hidden["blue"] == 0
