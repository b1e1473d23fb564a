"""Screenshot of the 4-up layout with the 3D surface view: the bundled hippocampus MR and
its reference label (head and body of the hippocampus, two labels), run under Xvfb
(Mesa's software OpenGL).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_surface_screenshot.py
"""

from __future__ import annotations

import sys

from shot_wait import OUT, ROOT, wait_until  # the project on sys.path, a temporary SEGLOOP_HOME

SCAN = ROOT / "unet_engine" / "resources" / "samples" / "hippocampus_003.nii.gz"
LABEL = ROOT / "tests" / "data" / "hippocampus" / "labelsTr" / "hippocampus_003.nii.gz"




def main() -> int:
    from PySide6 import QtWidgets

    from desktop_app.app import build_app

    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # kept alive
    parts = build_app(restore_layout=False)
    parts.window.resize(1500, 950)
    parts.window.show()
    parts.grid.set_layout("4-up")

    def wait(pred, timeout=60.0):
        return wait_until(pred, timeout)

    sv = parts.grid.surface_view
    parts.controller.open_scan(SCAN, mask=LABEL)
    wait(lambda: parts.document.image is not None and not parts.controller.workers.is_busy)
    wait(lambda: sv.builds > 0 and not sv.is_building)
    if sv.unavailable_reason is not None:
        print("3D view unavailable:", sv.unavailable_reason)
        return 1
    sv.gl_view.orbit(25, 5)  # a little from the side, to show it is 3D
    wait(lambda: False, timeout=1.0)
    out = OUT / "surface_view.png"
    parts.window.grab().save(str(out))
    print("wrote", out, "-", {v: m.n_vertices for v, m in sv.surfaces.meshes.items()}, "vertices,",
          f"built in {sv.last_build_seconds:.2f} s")
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
