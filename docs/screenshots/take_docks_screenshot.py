"""The whole window at 1400 x 900 with a scan open and the model run: every dock's main
buttons ("Add to training set", the Fine-tune status, Promote) in view without scrolling.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_docks_screenshot.py

Writes docs/screenshots/docks_1400x900.png (Fine-tune tab in front) and
docs/screenshots/shortcuts_dialog.png (Help > Shortcuts, every column whole).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6 import QtCore, QtWidgets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent
CASE = ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"


def settle(app: QtWidgets.QApplication, ms: int = 300) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def main() -> int:
    os.environ.setdefault("SEGLOOP_HOME", tempfile.mkdtemp(prefix="segloop_shots_"))  # never the user's data
    from desktop_app.app import build_app

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    parts = build_app(restore_layout=False)
    w = parts.window
    w.resize(1400, 900)
    w.show()
    settle(app)
    parts.controller.open_scan(CASE)
    parts.controller.workers.wait_idle(60_000)
    if parts.inference.run_inference() is not None:
        parts.controller.workers.wait_idle(120_000)
    w.docks["Fine-tune"].raise_()
    settle(app)
    w.grab().save(str(OUT / "docks_1400x900.png"))
    dlg = parts.controller.show_shortcuts()
    settle(app)
    dlg.grab().save(str(OUT / "shortcuts_dialog.png"))
    print("wrote", OUT / "docks_1400x900.png", "and", OUT / "shortcuts_dialog.png")
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
