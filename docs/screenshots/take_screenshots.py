"""Grab screenshots of the real app with real scans (run under Xvfb).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/screenshots/take_screenshots.py

Reads ../shared/data (falls back to tests/data/io); writes docs/screenshots/*.png.
Each scene opens files through the controller (worker thread, like a user would), waits,
sets the view, and grabs the main window (or a dialog) once painted.
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
SHARED = ROOT.parent / "shared" / "data"
LOCAL = ROOT / "tests" / "data" / "io"


def pick(shared_rel: str, local_rel: str) -> Path:
    p = SHARED / shared_rel
    return p if p.exists() else LOCAL / local_rel


def settle(app: QtWidgets.QApplication, ms: int = 300) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def open_files(parts, scan: Path, mask: Path | None = None) -> None:
    parts.controller.open_scan(scan, mask=mask)
    parts.controller.workers.wait_idle(60_000)
    if parts.controller.last_error:
        raise SystemExit(f"could not open {scan}: {parts.controller.last_error}")


def main() -> int:
    os.environ.setdefault("SEGLOOP_HOME", tempfile.mkdtemp(prefix="segloop_shots_"))  # never the user's data
    from desktop_app.app import build_app, configure_pyqtgraph
    from desktop_app.settings import Settings

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    configure_pyqtgraph()
    settings = Settings(OUT / ".screenshot_settings.ini")
    parts = build_app(settings, restore_layout=False)
    parts.controller.ask_discard_changes = lambda: True
    w = parts.window
    w.resize(1800, 1000)
    w.show()
    settle(app)
    shots: list[str] = []

    def grab(name: str, widget: QtWidgets.QWidget | None = None) -> None:
        settle(app)
        path = OUT / f"{name}.png"
        (widget or w).grab().save(str(path))
        shots.append(str(path.relative_to(ROOT)))

    # 1. spleen CT + manual label, 3-up, CT soft-tissue window
    spleen = pick("formats/ct_spleen_nifti/image.nii.gz", "ct_spleen_nifti/image.nii.gz")
    open_files(parts, spleen, spleen.with_name("label.nii.gz"))
    parts.document.labels.rename(1, "Spleen")
    grab("ct_spleen_3up")

    # 2. hippocampus MR with its two labels (MSD names), outline mode, one big axial view
    hip = SHARED / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    if not hip.exists():
        hip = ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    hip_label = hip.parent.parent / "labelsTr" / hip.name
    open_files(parts, hip, hip_label)
    parts.document.labels.rename(1, "Anterior hippocampus")
    parts.document.labels.rename(2, "Posterior hippocampus")
    k, j, i = parts.document.mask.nonzero()
    parts.document.set_cursor((int(k.mean()), int(j.mean()), int(i.mean())))
    grab("mr_hippocampus_3up")
    parts.options.outline = True
    parts.grid.set_layout("axial")
    grab("mr_hippocampus_axial_outline")
    parts.options.outline = False
    parts.grid.set_layout("3-up")

    # 3. brain MR stored LAS (NRRD) with its region label: letters stay radiological
    brain = pick("formats/mri_brain_nrrd/image.nrrd", "mri_brain_nrrd/image.nrrd")
    open_files(parts, brain, brain.with_name("label.nrrd"))
    k, j, i = parts.document.mask.nonzero()
    parts.document.set_cursor((int(k.mean()), int(j.mean()), int(i.mean())))
    grab("mr_brain_las_3up")

    # 4. 3-slice CT DICOM series with liver/spine labels, lung window preset
    dicom = pick("formats/ct_dicom_3slice/series", "ct_dicom_3slice/series")
    open_files(parts, dicom, dicom.parent / "label_liver_spine.nrrd")
    parts.document.labels.rename(1, "Liver")
    parts.document.labels.rename(2, "Spine")
    parts.window_level.apply_preset("Lung")
    parts.grid.set_layout("axial")
    grab("ct_dicom_axial_lung_window")
    parts.grid.set_layout("3-up")

    # 5. the shortcuts dialog (generated from the actions) and a 4D error dialog
    dlg = parts.controller.show_shortcuts()
    dlg.resize(620, 760)
    grab("shortcuts_dialog", dlg)
    dlg.close()
    fmri = pick("formats/nifti_4d_fmri/image.nii.gz", "nifti_4d_fmri/image.nii.gz")
    parts.controller.open_scan(fmri)
    parts.controller.workers.wait_idle(30_000)
    settle(app)
    boxes = [b for b in w.findChildren(QtWidgets.QMessageBox) if b.isVisible()]
    if boxes:
        grab("error_4d_dialog", boxes[0])
        boxes[0].done(0)

    parts.controller.shutdown()
    (OUT / ".screenshot_settings.ini").unlink(missing_ok=True)
    print("\n".join(shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
