"""Screenshots of the project workflow (run under Xvfb: the switcher's popup is grabbed from the screen).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_project_screenshots.py

In a temporary SEGLOOP_HOME: the app starts with "Hippocampus (MRI)" (first start), a
second project "Spleen CT" exists, a hippocampus sample is open. Writes

* ``project_switcher.png``: the main window with the toolbar's project switcher open;
* ``new_project_dialog.png``: File > New project... filled in (labels from an ITK-SNAP file);
* ``plan_dialog.png``: "Train first model" on a new project with 6 corrected hippocampus
  cases: the plan (computed and calibrated in a worker), its reasons and the Advanced fields.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shot_wait import OUT, ROOT, wait_until  # the project on sys.path, a temporary SEGLOOP_HOME




def main() -> int:
    from PySide6 import QtCore, QtGui, QtWidgets

    from desktop_app.app import build_app
    from unet_engine.data.importing import import_msd
    from unet_engine.projects import ProjectStore

    hippo = ROOT.parent / "shared" / "data" / "hippocampus"
    if not (hippo / "imagesTr").is_dir():
        hippo = ROOT / "tests" / "data" / "hippocampus"
    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # kept alive
    parts = build_app(restore_layout=False)  # first start: "Hippocampus (MRI)" from the bundled model
    ProjectStore().create("Spleen CT", modality="CT", labels={1: "spleen"}, colours={1: (0, 200, 80)})
    parts.projects.refresh_list()
    parts.window.resize(1500, 950)
    parts.window.move(0, 0)
    parts.window.show()
    parts.controller.ask_discard_changes = lambda: True

    def wait(pred, timeout=600.0):
        return wait_until(pred, timeout)

    def settle(seconds=0.6):
        wait(lambda: False, timeout=seconds)

    parts.controller.open_scan(ROOT / "unet_engine" / "resources" / "samples" / "hippocampus_003.nii.gz")
    wait(lambda: parts.document.image is not None and not parts.controller.workers.is_busy)
    parts.inference.run_inference()
    wait(lambda: parts.inference.worker is None)

    # 1. the switcher, open
    combo = parts.window.findChild(QtWidgets.QComboBox, "project_combo")
    combo.showPopup()
    settle()
    shot = QtGui.QGuiApplication.primaryScreen().grabWindow(0)
    geo = parts.window.frameGeometry()
    shot.copy(QtCore.QRect(geo.x(), geo.y(), geo.width(), geo.height())).save(str(OUT / "project_switcher.png"))
    combo.hidePopup()
    print("wrote", OUT / "project_switcher.png")

    # 2. the New project dialog, filled in
    labels = Path(os.environ["SEGLOOP_HOME"]) / "hippocampus_labels.txt"
    labels.write_text('0 0 0 0 0 0 0 "Clear Label"\n1 230 120 40 1 1 1 "head"\n2 60 160 230 1 1 1 "tail"\n',
                      encoding="utf-8")
    dlg = parts.projects.show_new_project_dialog()
    dlg.name_edit.setText("Hippo renamed")
    dlg.import_labels(labels)
    settle()
    dlg.grab().save(str(OUT / "new_project_dialog.png"))
    print("wrote", OUT / "new_project_dialog.png")
    dlg.create_requested.emit(dlg.spec())
    wait(lambda: parts.session.name == "Hippo renamed" and not parts.controller.workers.is_busy)

    # 3. Train first model: the plan dialog
    import_msd(hippo, parts.session.dataset_folder, limit=6)
    parts.session.dataset_changed.emit()
    parts.first_model.plan_first_model()
    wait(lambda: parts.first_model.dialog is not None)
    plan = parts.first_model.dialog
    plan.advanced.setChecked(True)
    plan.resize(860, 760)
    settle()
    plan.grab().save(str(OUT / "plan_dialog.png"))
    print("wrote", OUT / "plan_dialog.png")
    plan.reject()
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
