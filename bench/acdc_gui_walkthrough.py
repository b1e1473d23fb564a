"""ACDC through the real GUI: a new project from nothing to a fine-tuned model, timed.

    .venv/bin/python bench/acdc_gui_walkthrough.py [--minutes 8] [--fine-tune-minutes 3] [--threads 1] \
        [--data ../shared/data/cardiac_acdc] [--out summary.json]

The real app (``desktop_app.app.build_app``; Qt offscreen unless ``QT_QPA_PLATFORM`` says otherwise;
a temporary ``SEGLOOP_HOME``, never the user's) is driven as a user drives it: File > New project
"ACDC heart" (MR, labels typed in the dialog's table, start empty) -> 5 volumes of distinct patients
opened with their reference labels (the corrected masks) and added -> Train first model (the plan,
made in a worker, in the plan dialog; the budget typed in; Start) -> a new patient: Run model, scored
against its reference, "corrected" (File > Open mask with the reference) and added (effort record)
-> a fine-tune from the Fine-tune panel -> another new patient: Run model with the first model,
Promote the new version in Model versions, Run model again. The "Hippocampus (MRI)" project made on
first start must be byte-identical at the end.

Clicks and typing go to the real widgets (QTest); waits run the Qt event loop until the workers and
controllers say they are done (no sleeps). ``--threads``: torch threads of the GUI process
(inference); planning and training use the app's own choice (all CPUs but one). Prints a timed log
and a JSON summary. ACDC files are only read. Skips cleanly when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELS = {1: "right ventricle", 2: "myocardium", 3: "left ventricle"}
TRAIN = ("patient001", "patient019", "patient039", "patient066", "patient082")  # spread over the 30 patients
NEW = ("patient008", "patient059")  # scored before they are ever added
FRAME = "frame01"  # end-diastole


class Walk:
    """The app, a clock, and helpers that act like a user and wait like one."""

    def __init__(self, data: Path) -> None:
        from PySide6 import QtCore, QtWidgets
        from PySide6.QtTest import QTest

        from desktop_app.app import build_app

        self.QtCore, self.QtWidgets, self.QTest = QtCore, QtWidgets, QTest
        self.data, self.t0, self.errors = data, time.perf_counter(), []
        self.parts = p = build_app(restore_layout=False)
        p.window.resize(1400, 900)
        p.window.show()
        p.controller.error_shown.connect(lambda title, text: self.errors.append(f"{title}: {text}"))
        self.ip, self.tp, self.vp = p.inference.panel, p.training.panel, p.versions.panel

    def log(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {text}", flush=True)

    def wait(self, done: Callable[[], Any], what: str, timeout_s: float,
             report: Callable[[], str] | None = None) -> float:
        """Run the event loop until ``done()`` (checked when the workers change and every 50 ms);
        ``report`` is logged every minute. Returns the seconds waited."""
        QtCore, start, busy = self.QtCore, time.perf_counter(), self.parts.controller.workers.busy_changed
        loop = QtCore.QEventLoop()
        check = lambda *_a: (done() or self.errors) and loop.quit()  # noqa: E731
        poll, limit, every = QtCore.QTimer(), QtCore.QTimer(), QtCore.QTimer()
        poll.timeout.connect(check)
        limit.setSingleShot(True)
        limit.timeout.connect(loop.quit)
        every.timeout.connect(lambda: report and self.log(f"  ... {report()}"))
        busy.connect(check)
        for timer, ms in ((poll, 50), (limit, int(timeout_s * 1000)), (every, 60_000)):
            timer.start(ms)
        if not done():
            loop.exec()
        busy.disconnect(check)
        for timer in (poll, limit, every):
            timer.stop()
        if self.errors:
            raise RuntimeError(f"{what}: the app showed an error: {self.errors}")
        if not done():
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")
        return time.perf_counter() - start

    def click(self, button: Any) -> None:
        assert button.isVisible() and button.isEnabled(), f"{button.text()!r} is not clickable"
        self.QTest.mouseClick(button, self.QtCore.Qt.MouseButton.LeftButton)

    def type_over(self, widget: Any, text: str) -> None:
        widget.setFocus()
        widget.selectAll()
        self.QTest.keyClicks(widget, text)

    def type_cell(self, table: Any, row: int, text: str) -> None:
        """Click a label-name cell, F2, type, Enter (the delegate commits on a queued call)."""
        Qt = self.QtCore.Qt
        self.QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                              pos=table.visualRect(table.model().index(row, 1)).center())
        self.QTest.keyClick(table, Qt.Key.Key_F2)
        editor = table.viewport().findChild(self.QtWidgets.QLineEdit)
        editor.selectAll()
        self.QTest.keyClicks(editor, text)
        self.QTest.keyClick(editor, Qt.Key.Key_Return)
        self.wait(lambda: table.item(row, 1).text() == text, "label name typed", 5)

    def press_discard_when_asked(self) -> None:
        """Press Discard in the modal "unsaved mask" question the next action opens."""
        MessageBox = self.QtWidgets.QMessageBox

        def answer() -> None:
            box = self.QtWidgets.QApplication.activeModalWidget()
            if isinstance(box, MessageBox) and box.button(MessageBox.StandardButton.Discard):
                self.click(box.button(MessageBox.StandardButton.Discard))
            else:
                self.QtCore.QTimer.singleShot(20, answer)

        self.QtCore.QTimer.singleShot(0, answer)

    def path(self, kind: str, patient: str) -> Path:
        return self.data / kind / f"{patient}_{FRAME}.nii.gz"

    def open_scan(self, patient: str, with_reference: bool = False) -> float:
        c, doc, path = self.parts.controller, self.parts.document, self.path("imagesTr", patient)
        c.open_scan(path, mask=self.path("labelsTr", patient) if with_reference else None)
        return self.wait(lambda: doc.image is not None and path.name in str(doc.image.source_path or "")
                         and not c.workers.is_busy, f"open {path.name}", 60)

    def open_reference_as_mask(self, patient: str) -> Any:
        """The radiologist's correction stands in: File > Open mask with the reference labels."""
        c, opened = self.parts.controller, []
        c.mask_opened.connect(opened.append)
        if self.parts.document.dirty:
            self.press_discard_when_asked()  # the prediction is an unsaved edit
        c.open_mask(self.path("labelsTr", patient))
        self.wait(lambda: opened and not c.workers.is_busy, f"open the mask of {patient}", 60)
        c.mask_opened.disconnect(opened.append)
        return self.parts.document.mask.copy()

    def add_to_training_set(self) -> Any:
        d, last = self.parts.dataset, self.parts.dataset.last_add
        self.click(self.ip.add_button)
        self.wait(lambda: d.last_add is not last and d.worker is None, "add to training set", 120)
        return d.last_add

    def run_model(self) -> dict[str, Any]:
        inf, got, t = self.parts.inference, [], time.perf_counter()
        inf.prediction_applied.connect(got.append)
        self.click(self.ip.run_button)
        self.wait(lambda: got and inf.worker is None, "Run model", 600)
        inf.prediction_applied.disconnect(got.append)
        pred = self.parts.learning.prediction
        return {"version": pred.version, "mask": pred.mask.copy(), "run_wall_s": round(time.perf_counter() - t, 2),
                "model_s": round(got[0].seconds, 2)}

    def train(self, what: str, minutes: float) -> dict[str, Any]:
        """Wait for the training run the last click started (the panel's status every minute)."""
        tp = self.tp
        status = lambda: f"{tp.status_label.text()} · {tp.time_label.text()} · {points(tp.loss_curve)} pts"  # noqa
        seconds = self.wait(lambda: self.parts.training.worker is None, what, minutes * 120 + 600, status)
        res = self.parts.training.last_train
        assert res is not None, tp.status_label.text()
        card = self.parts.session.registry.get(res.version).path / "card.json"
        config = json.loads(card.read_text(encoding="utf-8"))["training"]["config"]
        return {"version": res.version, "parent": res.parent, "steps": res.steps, "stopped": res.stopped,
                "wall_min": round(seconds / 60, 2), "batch_size": config["batch_size"], "lr": config["lr"],
                "patch_size": config.get("patch_size"), "flip_axes": config["augment"].get("flip_axes"),
                "loss_points": points(tp.loss_curve), "val_dice_curves": sorted(tp.dice_curves),
                "panel_status": tp.status_label.text(), "metrics": res.metrics}


def score(run: dict[str, Any], ref: Any, spacing: tuple[float, ...]) -> dict[str, Any]:
    """Dice per label (None: in neither), voxels to repaint, those beyond 1 mm (unet_engine.metrics; with
    1.5 mm voxels that is every wrong voxel) and those beyond one in-plane voxel (1.5 mm)."""
    from unet_engine.metrics import dice_or_none, mean_defined, voxels_beyond_tolerance

    pred = run.pop("mask")
    dice = {name: dice_or_none(pred, ref, v) for v, name in LABELS.items()}
    return {**run, "dice": {k: d if d is None else round(d, 4) for k, d in dice.items()},
            "mean_dice": round(mean_defined(dice.values()) or 0.0, 4), "voxels_wrong": int((pred != ref).sum()),
            "voxels_total": int(pred.size), "voxels_beyond_1mm": voxels_beyond_tolerance(pred, ref, spacing, 1.0),
            "voxels_beyond_1_voxel": voxels_beyond_tolerance(pred, ref, spacing, max(sorted(spacing)[:2]))}


def points(curve: Any) -> int:
    xs = curve.getData()[0]
    return 0 if xs is None else len(xs)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".segloop.lock" not in p.name}


def walkthrough(w: Walk, minutes: float, ft_minutes: int) -> dict[str, Any]:
    p, ip, tp, vp, out = w.parts, w.ip, w.tp, w.vp, {}
    hippo, t = p.session.project, time.perf_counter()
    hippo_before = snapshot(hippo.folder)
    w.log(f"app open on project {p.session.name!r}")

    # 1. File > New project
    p.window.named_actions["new_project"].trigger()
    dlg = p.projects.new_dialog
    w.QTest.keyClicks(dlg.name_edit, "ACDC heart")
    assert dlg.modality.currentData() == "MR" and dlg.start_combo.currentData() == "empty"
    for row, name in enumerate(LABELS.values()):
        w.click(dlg.add_button)
        w.type_cell(dlg.table, row, name)
    w.click(dlg.create_button)
    w.wait(lambda: p.session.name == "ACDC heart" and not p.controller.workers.is_busy, "create project", 60)
    assert p.session.project.labels == LABELS and p.session.project.modality == "MR"
    out["no_model_text"] = ip.model_label.text()
    assert out["no_model_text"].startswith("No model yet") and not ip.run_button.isEnabled()
    w.log(f"project created in {time.perf_counter() - t:.1f} s; AI panel: {out['no_model_text']!r}; Run model disabled")

    # 2. five corrected cases
    for patient in TRAIN:
        s = w.open_scan(patient, with_reference=True)
        res = w.add_to_training_set()
        w.log(f"{patient}: opened with its labels in {s:.1f} s, added as {res.case_id} ({res.split}); "
              f"{res.cases} cases, {res.val_cases} for validation")

    # 3. Train first model: plan (worker) -> plan dialog -> budget typed -> Update plan -> Start
    w.click(tp.first_model_button)
    out["plan_s"] = round(w.wait(lambda: p.first_model.dialog is not None, "plan the first model", 900), 1)
    pd = p.first_model.dialog
    w.log(f"plan shown after {out['plan_s']} s (budget {pd.minutes.value():g} min):\n    "
          + pd.summary.toPlainText().replace("\n", "\n    "))
    w.type_over(pd.minutes, f"{minutes:g}")
    if not pd.start_button.isEnabled():  # a new budget: Update plan refits the steps
        w.click(pd.update_button)
        w.wait(lambda: p.first_model.worker is None and pd.start_button.isEnabled(), "update plan", 600)
    out["plan_summary"] = pd.summary.toPlainText().splitlines()
    out["plan"] = {k: v for k, v in pd.plan.to_dict().items() if k not in ("fingerprint", "reasons")}
    w.log(f"budget {minutes:g} min -> {pd.plan.max_steps} steps of {pd.plan.seconds_per_step:.2f} s")
    w.click(pd.start_button)
    out["first_model"] = w.train("first model", minutes)
    v1 = out["first_model"]["version"]
    assert p.session.registry.active == v1 and ip.run_button.isEnabled()
    w.log(f"first model: {out['first_model']}; active, Run model enabled")

    # 4a. a new patient: Run model, score, correct (the reference as the mask), add -> effort record
    a, b = NEW
    w.open_scan(a)
    run = w.run_model()
    out["new_patient_1"] = {"patient": a, **score(run, w.open_reference_as_mask(a), p.document.image.spacing)}
    w.log(f"{a}: {out['new_patient_1']}")
    n_records = len(p.dataset.effort.records())
    added = w.add_to_training_set()
    records = p.dataset.effort.records()
    assert len(records) == n_records + 1, "no effort record"
    out["effort_record"] = {**records[-1].__dict__, "panel_text": ip.add_label.text()}
    w.log(f"added {added.case_id} ({added.split}); effort record: {out['effort_record']}")

    # 4b. fine-tune from the Fine-tune panel, a budget in minutes
    tp.budget_unit.setFocus()
    while tp.budget_unit.currentData() != "minutes":
        w.QTest.keyClick(tp.budget_unit, w.QtCore.Qt.Key.Key_Down)
    w.type_over(tp.budget_spin, str(ft_minutes))
    assert tp.budget() == ("minutes", ft_minutes)
    w.click(tp.start_button)
    out["fine_tune"] = w.train("fine-tune", ft_minutes)
    v2 = out["fine_tune"]["version"]
    assert v2 != v1 and vp.row_of(v2) >= 0 and p.session.registry.active == v1
    out["versions_table"] = [[vp.table.horizontalHeaderItem(c).text() for c in range(vp.table.columnCount())]] + [
        [vp.table.item(r, c).text() for c in range(vp.table.columnCount())] for r in range(vp.table.rowCount())]
    w.log(f"fine-tune: {out['fine_tune']}; versions panel: {out['versions_table']}")

    # 4c. another new patient: the first model; Promote the new version in Model versions; Run model again
    w.open_scan(b)
    before = w.run_model()
    vp.table.selectRow(vp.row_of(v2))
    # a version with no validation Dice asks first (a blocking box): the walkthrough answers Yes
    p.versions.ask_promote_unvalidated = lambda v, why: w.log(f"promote {v}: no validation Dice ({why})") or True
    w.click(vp.promote_button)
    w.wait(lambda: p.versions.registry_worker is None and p.session.registry.active == v2, "promote", 60)
    w.log(f"promoted {v2}; AI panel: {ip.model_label.text()!r}")
    after = w.run_model()
    ref = w.open_reference_as_mask(b)
    for key, run in (("new_patient_2_first_model", before), ("new_patient_2_fine_tuned", after)):
        out[key] = {"patient": b, **score(run, ref, p.document.image.spacing)}
        w.log(f"{b}: {out[key]}")
    w.wait(lambda: not p.controller.workers.is_busy, "last jobs", 60)
    out["hippocampus_project_untouched"] = snapshot(hippo.folder) == hippo_before
    out["projects"] = p.session.store.names()
    w.log(f"'Hippocampus (MRI)' untouched: {out['hippocampus_project_untouched']}; projects: {out['projects']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cardiac_acdc"))
    ap.add_argument("--minutes", type=float, default=8.0, help="the first model's time budget (plan dialog)")
    ap.add_argument("--fine-tune-minutes", type=int, default=3, help="the Fine-tune panel's budget")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the GUI process (inference)")
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    args = ap.parse_args()
    data = Path(args.data)
    needed = [data / sub / f"{pt}_{FRAME}.nii.gz" for sub in ("imagesTr", "labelsTr") for pt in TRAIN + NEW]
    if not all(f.is_file() for f in needed):
        print(f"skipped: no ACDC data at {data}")
        return 0
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segloop-acdc-gui-") as home:
        os.environ["SEGLOOP_HOME"] = home  # never the user's settings, projects or models
        import torch
        from PySide6 import QtWidgets

        torch.set_num_threads(args.threads)
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
        w = Walk(data)
        try:
            summary = walkthrough(w, args.minutes, args.fine_tune_minutes)
        finally:
            w.parts.controller.workers.wait_idle(30_000)
            w.parts.controller.shutdown()
            w.parts.window.deleteLater()
            app.processEvents()
    summary.update(total_wall_min=round((time.perf_counter() - t0) / 60, 2), gui_torch_threads=args.threads,
                   first_model_minutes=args.minutes, fine_tune_minutes=args.fine_tune_minutes,
                   train_cases=[f"{pt}_{FRAME}" for pt in TRAIN], new_cases=[f"{pt}_{FRAME}" for pt in NEW])
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
