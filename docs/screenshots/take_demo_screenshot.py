"""Screenshot of what `make demo` shows after pressing Run: the bundled default model's
prediction on the demo scan (run under Xvfb).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_demo_screenshot.py
"""

from __future__ import annotations

import sys

from shot_wait import OUT, ROOT, wait_until  # the project on sys.path, a temporary SEGLOOP_HOME




def main() -> int:
    from PySide6 import QtWidgets

    from desktop_app.app import build_app

    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # kept alive
    parts = build_app(restore_layout=False)
    parts.window.resize(1500, 950)
    parts.window.show()
    inf = parts.inference
    parts.controller.request_model("default")

    def wait(pred, timeout=120.0):
        return wait_until(pred, timeout)

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
