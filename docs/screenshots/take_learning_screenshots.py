"""Screenshots of the fine-tune and model-versions panels with real data (run under Xvfb).

Usage: xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_learning_screenshots.py

Trains a small 2D U-Net from scratch on 6 hippocampus cases (a few hundred steps, so the
curves have a shape), fine-tunes it once more from the first version, promotes, compares
the two on a case, and grabs the "Fine-tune" and "Model versions" docks.
"""

from __future__ import annotations

import sys

from shot_wait import OUT, ROOT, wait_until  # the project on sys.path, a temporary SEGLOOP_HOME




def main() -> int:
    from PySide6 import QtWidgets

    from desktop_app.app import build_app
    from unet_engine.data.importing import import_msd

    hippo = ROOT.parent / "shared" / "data" / "hippocampus"
    if not (hippo / "imagesTr").is_dir():
        hippo = ROOT / "tests" / "data" / "hippocampus"
    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # kept alive
    parts = build_app(restore_layout=False)
    parts.window.resize(1500, 950)
    parts.window.show()
    tr, vc, session = parts.training, parts.versions, parts.session
    import_msd(hippo, session.dataset_folder, labels={1: "anterior", 2: "posterior"}, limit=8)
    tr.base_config = tr.base_config.replace(
        model_spec={"base_width": 8, "depth": 3}, steps_per_epoch=20, batch_size=8, lr=3e-3, warmup_steps=10,
        val_max_cases=2, validate_at_start=True, patience=0, num_threads=2)

    def wait(pred, timeout=900.0):
        return wait_until(pred, timeout)

    for steps in (160, 100):
        tr.panel.set_budget("steps", steps)
        tr.start_training()
        wait(lambda: tr.worker is None)
        if steps == 160:
            vc.promote(tr.last_train.version)
    parts.controller.open_scan(sorted((hippo / "imagesTr").glob("*.nii.gz"))[-1])
    wait(lambda: parts.document.image is not None and not parts.controller.workers.is_busy)
    parts.inference.run_inference()
    wait(lambda: parts.inference.worker is None)
    vs = [v.version for v in session.registry.list()]
    vc.compare(vs[0], vs[-1])
    wait(lambda: vc.compare_worker is None)
    vc.panel.select(vs[-1])
    for title, name in (("Fine-tune", "finetune_panel.png"), ("Model versions", "versions_panel.png")):
        dock = parts.window.docks[title]
        dock.setFloating(True)
        dock.resize(1100, 380)
        dock.show()
        dock.raise_()
        wait(lambda: False, timeout=0.6)
        dock.grab().save(str(OUT / name))
        print("wrote", OUT / name)
    parts.controller.workers.wait_idle(30_000)
    parts.controller.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
