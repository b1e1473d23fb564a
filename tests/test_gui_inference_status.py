"""The AI model panel tells the truth about the last thing that happened: a cancelled run
says it was cancelled and empties its bar; the previous case's "Added case ..." account
goes when another scan is opened."""

from __future__ import annotations

import threading

import pytest

from desktop_app import learning_jobs
from tests.train_helpers import HIPPO
from unet_engine.progress import Progress

CASE = HIPPO / "imagesTr" / "hippocampus_320.nii.gz"
OTHER = HIPPO / "imagesTr" / "hippocampus_221.nii.gz"


def _open(qtbot, parts, path):
    parts.controller.open_scan(path)
    qtbot.waitUntil(lambda: parts.document.image is not None and parts.document.image.source_path is not None
                    and str(parts.document.image.source_path) == str(path)
                    and not parts.controller.workers.is_busy, timeout=20_000)


def _held_inference(stop_how: str):
    """An inference job that reports 45 % and then holds until Cancel, stopping the way the
    engine does (``"error"``: raises CancelledError from the token) or the way superqt does
    (``"yield"``: the worker is aborted at its next progress report)."""
    released = threading.Event()

    def job(path, cached, volume, *, cancel, **_kwargs):
        yield Progress(0.0, "loading the model")
        yield Progress(0.45, "sliding window")
        while not cancel.cancelled:
            if released.wait(0.01):  # safety net: never hold a worker past the test
                return None
        if stop_how == "error":
            cancel.raise_if_cancelled("inference")
        yield Progress(0.45, "sliding window")  # superqt stops the generator here
        return None

    return job, released


@pytest.mark.parametrize("stop_how", ["yield", "error"])
def test_cancel_says_cancelled_and_empties_the_bar(qtbot, segloop_app, monkeypatch, stop_how):
    parts = segloop_app
    inf = parts.inference
    panel = inf.panel
    job, released = _held_inference(stop_how)
    monkeypatch.setattr(learning_jobs, "inference_job", job)
    _open(qtbot, parts, CASE)
    assert panel.run_button.isEnabled(), panel.model_label.text()
    try:
        panel.run_button.click()
        qtbot.waitUntil(lambda: panel.progress.value() == 450, timeout=10_000)
        assert panel.status_label.text().startswith("Running")
        assert "45%" in panel.progress.text()
        panel.cancel_button.click()
        qtbot.waitUntil(lambda: inf.worker is None, timeout=10_000)
    finally:
        released.set()
    assert "cancelled" in panel.status_label.text().lower(), panel.status_label.text()
    assert "Running" not in panel.status_label.text()
    assert panel.progress.value() == 0 and panel.progress.text() == ""
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert "AI prediction" not in parts.editing.history.undo_text  # the mask is unchanged


def test_added_case_text_is_cleared_when_another_scan_opens(qtbot, segloop_app):
    parts = segloop_app
    panel = parts.inference.panel
    _open(qtbot, parts, CASE)
    doc = parts.document
    mask = doc.mask.copy()
    mask[doc.cursor] = 1  # a corrected voxel: something worth adding
    parts.editing.history.apply_full_mask(mask, "Brush stroke")
    panel.add_button.click()
    qtbot.waitUntil(lambda: parts.dataset.worker is None, timeout=20_000)
    assert panel.add_label.text().startswith("Added case"), panel.add_label.text()
    _open(qtbot, parts, OTHER)
    assert panel.add_label.text() == ""
    assert panel.add_button.isEnabled()
