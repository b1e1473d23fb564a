"""Screenshots of Grow from seeds on the spleen CT: the preview over the scan (seeds and the
grown spleen, before Enter), then the accepted mask in the 4-up layout with its 3D surface.
Run under Xvfb (Mesa's software OpenGL for the 3D pane).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_tools_screenshot.py
"""

from __future__ import annotations

import sys

import numpy as np

from shot_wait import OUT, ROOT, wait_until  # the project on sys.path, a temporary SEGLOOP_HOME

SCAN = ROOT / "tests" / "data" / "io" / "ct_spleen_nifti" / "image.nii.gz"
LABEL = ROOT / "tests" / "data" / "io" / "ct_spleen_nifti" / "label.nii.gz"




def main() -> int:
    from PySide6 import QtWidgets

    from desktop_app.app import build_app
    from desktop_app.editing import editing_controller
    from desktop_app.settings import Settings
    from unet_engine.io.volume_io import read_volume
    from unet_engine.projects import ProjectStore

    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # kept alive
    ProjectStore().create("Spleen CT", modality="CT", labels={1: "spleen"})
    Settings().set_last_project("Spleen CT")
    parts = build_app(restore_layout=False)
    parts.window.resize(1500, 950)
    parts.window.show()
    parts.grid.set_layout("4-up")

    def wait(pred, timeout=60.0):
        return wait_until(pred, timeout)

    parts.controller.open_scan(SCAN)
    wait(lambda: parts.document.image is not None and not parts.controller.workers.is_busy)
    parts.controller.window_level.apply_preset_index(2)  # CT soft tissue
    ed = editing_controller(parts.window)
    ref = read_volume(LABEL).array > 0
    k = int(np.argmax(ref.sum(axis=(1, 2))))
    jj, ii = np.nonzero(ref[k])
    j, i = int(np.median(jj)), int(np.median(ii))
    j0, j1, i0, i1 = jj.min() - 4, jj.max() + 4, ii.min() - 4, ii.max() + 4
    parts.document.set_cursor((k, j, i))
    ed.tool_panel.set_tool("seeds")
    tools = ed.tools
    tools.brush.size = 3
    tools.press(0, k, j, i - 4)
    tools.move(0, k, j, i + 4)
    tools.release()
    for n, (r, c) in enumerate([(j0, i0), (j0, i1), (j1, i1), (j1, i0), (j0, i0)]):
        (tools.press if n == 0 else tools.move)(0, k, r, c, **({"erase": True} if n == 0 else {}))
    tools.release()
    wait(lambda: tools.preview.has_result and not ed.preview_tools.busy)
    wait(lambda: False, timeout=0.5)
    parts.window.grab().save(str(OUT / "grow_from_seeds_preview.png"))
    ed.preview_tools.accept()
    wait(lambda: not tools.preview.active and not parts.controller.workers.is_busy)
    sv = parts.grid.surface_view
    wait(lambda: sv.builds > 0 and not sv.is_building)
    wait(lambda: False, timeout=1.0)
    parts.window.grab().save(str(OUT / "grow_from_seeds_accepted.png"))
    got = parts.document.mask == 1
    dice = 2 * (got & ref).sum() / (got.sum() + ref.sum())
    print(f"wrote the two screenshots; 2 strokes -> spleen Dice {dice:.3f}")
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
