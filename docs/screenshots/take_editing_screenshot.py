"""Screenshot of mask correction in the real app (run under Xvfb): docs/screenshots/editing.png.

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python docs/screenshots/take_editing_screenshot.py

Opens tests/data/io/ct_spleen_nifti (scan + spleen label) through the controller, names
label 1 "Spleen", adds "Lesion", paints a brush stroke across the spleen's edge with real
mouse events on the axial view, leaves the mouse over the view so the brush outline
shows, and grabs the main window. ``SEGLOOP_HOME`` is a temporary folder unless set.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent / "editing.png"
DATA = ROOT / "tests" / "data" / "io" / "ct_spleen_nifti"


def main() -> int:
    os.environ.setdefault("SEGLOOP_HOME", tempfile.mkdtemp(prefix="segloop_shot_"))
    import numpy as np
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtTest import QTest

    app = QtWidgets.QApplication(sys.argv[:1])
    from desktop_app.app import build_app
    from desktop_app.editing import editing_controller

    parts = build_app(restore_layout=False)
    w = parts.window
    w.resize(1600, 1000)
    w.show()
    ed = editing_controller(w)
    parts.controller.open_scan(DATA / "image.nii.gz", mask=DATA / "label.nii.gz")
    parts.controller.workers.wait_idle(60_000)
    for _ in range(20):
        app.processEvents()
    doc = parts.document
    k = int(np.argmax((doc.mask == 1).sum(axis=(1, 2))))
    jj, ii = np.nonzero(doc.mask[k] == 1)
    doc.set_cursor((k, int(jj.mean()), int(ii.mean())))
    ed.label_editor.rename_label(1, "Spleen")
    ed.label_editor.add_label("Lesion", (255, 200, 0))
    ed.tool_panel.size_spin.setValue(8)
    ed.set_tool("brush")
    view = parts.grid.views["axial"]
    g = view.geometry_info
    vp = view.canvas.viewport()

    def pos(kji):
        x, y = g.crosshair_mm(kji)
        return view.display_to_widget(y / g.row_spacing, x / g.col_spacing)

    left, nomod = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    j, i = int(jj.min()) + 10, int(ii.mean())
    pts = [(k, j, i - 12), (k, j - 3, i - 4), (k, j - 4, i + 6), (k, j - 1, i + 14)]
    QTest.mousePress(vp, left, nomod, pos(pts[0]))
    for p in pts[1:]:
        QTest.mouseMove(vp, pos(p))
        app.processEvents()
    QTest.mouseRelease(vp, left, nomod, pos(pts[-1]))
    QTest.mouseMove(vp, pos((k, j + 22, i + 30)))  # the brush outline, over the spleen
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    w.grab().save(str(OUT))
    print(f"saved {OUT}")
    parts.controller.ask_discard_changes = lambda: True
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
