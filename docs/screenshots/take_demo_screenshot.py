"""Screenshot of what `make demo` shows after pressing Run: the bundled default model's
prediction on the demo scan (run under Xvfb).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_demo_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["SEGLOOP_HOME"] = tempfile.mkdtemp(prefix="segloop_shots_")
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    from PySide6 import QtCore, QtWidgets

    from desktop_app.app import build_app

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    parts = build_app(restore_layout=False)
    parts.window.resize(1500, 950)
    parts.window.show()
    inf = parts.inference
    parts.controller.request_model("default")

    def wait(pred, timeout=120.0):
        t0 = time.time()
        while not pred() and time.time() - t0 < timeout:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            QtCore.QThread.msleep(5)

    parts.controller.open_scan(ROOT / "unet_engine" / "resources" / "samples" / "hippocampus_003.nii.gz")
    wait(lambda: parts.document.image is not None and not parts.controller.workers.is_busy)
    inf.run_inference()
    wait(lambda: inf.worker is None)
    wait(lambda: False, timeout=1.0)
    parts.window.grab().save(str(OUT / "demo_default_model.png"))
    print("wrote", OUT / "demo_default_model.png", "-", inf.panel.model_label.text())
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
