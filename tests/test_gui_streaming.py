"""View-first streaming in the app: Run model shows the finished parts of the bundled 3D
model's labels in the slice views' preview layer while it runs (the slice in view first),
with a time estimate; the end is ONE undoable "AI prediction" step and the preview is gone;
Cancel mid-stream leaves the mask unchanged and the preview empty.

The job is the real one (bundled model, hippocampus cases side by side, sliding windows of
about the training patch so there are several); the test holds it at its first partial result, which
it follows through the progress reports, never through sleeps."""

from __future__ import annotations

import re

import threading

import numpy as np
import pytest

from desktop_app import learning_jobs
from tests.train_helpers import HIPPO
from unet_engine.inference import runner as inference_runner
from unet_engine.io.volume_io import read_volume, write_volume
from unet_engine.inference.streaming import PartialProgress
from unet_engine.volume import Volume

@pytest.fixture
def scan(tmp_path, monkeypatch):
    """Four hippocampus cases side by side (34 x 94 x 66), run with windows of about the
    training patch (4 windows), so the bundled model streams."""
    case = read_volume(HIPPO / "imagesTr" / "hippocampus_320.nii.gz")
    a = case.array
    tiled = Volume(np.ascontiguousarray(np.block([[a, a[:, :, ::-1]], [a[:, ::-1], a]])), spacing=case.spacing,
                   origin=case.origin, direction=case.direction, modality=case.modality)
    monkeypatch.setattr(inference_runner, "WINDOW_VOXELS", {"cpu": 1, "default": 1})
    return write_volume(tiled, tmp_path / "four_cases.nii.gz")


@pytest.fixture
def held_job(monkeypatch):
    """The real inference job, held after its first partial result until ``release`` is set."""
    first, release = threading.Event(), threading.Event()
    real = learning_jobs.inference_job

    def job(*args, **kwargs):
        gen = real(*args, **kwargs)
        cancel = kwargs.get("cancel")
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield item
            if isinstance(item, PartialProgress) and not first.is_set():
                first.set()
                while not release.wait(0.01) and not (cancel is not None and cancel.cancelled):
                    pass

    monkeypatch.setattr(learning_jobs, "inference_job", job)
    yield first, release
    release.set()


def _open(qtbot, parts, path):
    parts.controller.open_scan(path)
    qtbot.waitUntil(lambda: parts.document.image is not None and not parts.controller.workers.is_busy, timeout=20_000)


def _stream_layers(parts):
    return [layer for view in parts.grid.views.values() for layer in view.layers
            if getattr(layer, "preview", None) is parts.inference.streaming]


def _run_until_first_part(qtbot, parts, scan, first):
    """Open ``scan``, press Run model and wait for the held job's first partial result;
    returns the mask before the run and the views' streaming layers."""
    _open(qtbot, parts, scan)
    before = parts.document.mask.copy()
    layers = _stream_layers(parts)
    assert len(layers) == len(parts.grid.views) > 0
    parts.inference.panel.run_button.click()
    qtbot.waitUntil(first.is_set, timeout=120_000)
    return before, layers


def test_run_model_streams_into_the_views_then_one_undo_step(qtbot, segloop_app, scan, held_job):
    first, release = held_job
    parts = segloop_app
    inf, doc = parts.inference, parts.document
    before, layers = _run_until_first_part(qtbot, parts, scan, first)
    qtbot.waitUntil(lambda: any(layer.item.isVisible() for layer in layers), timeout=20_000)
    assert inf.worker is not None  # still running: the parts came before the end
    assert inf.streaming.has_result and inf.streaming.tool == "inference"
    assert "AI prediction" not in parts.editing.history.undo_text
    assert (doc.mask == before).all()  # the preview is not in the mask
    assert "left" in inf.panel.estimate_label.text(), inf.panel.estimate_label.text()
    release.set()
    qtbot.waitUntil(lambda: inf.worker is None, timeout=120_000)
    assert parts.editing.history.undo_text.endswith("AI prediction")
    assert not inf.streaming.active and inf.streaming.bbox is None
    assert not any(layer.item.isVisible() for layer in layers)
    text = inf.panel.status_label.text()
    total = re.search(r"Predicted in ([\d.]+) s", text)
    first = re.search(r"slice in view after ([\d.]+) s", text)
    assert total is not None, text
    assert first is None or float(first.group(1)) < float(total.group(1)), text  # named only when it came first
    predicted = doc.mask.copy()
    assert (predicted != before).any()
    parts.editing.history.undo()
    assert (doc.mask == before).all()  # one step undoes the whole prediction


def test_cancel_mid_stream_leaves_the_mask_and_an_empty_preview(qtbot, segloop_app, scan, held_job):
    first, release = held_job
    parts = segloop_app
    inf, doc = parts.inference, parts.document
    before, layers = _run_until_first_part(qtbot, parts, scan, first)
    qtbot.waitUntil(lambda: inf.streaming.has_result, timeout=20_000)
    inf.panel.cancel_button.click()
    assert inf.streaming.bbox is None  # the streamed labels go at once
    qtbot.waitUntil(lambda: inf.worker is None, timeout=60_000)
    assert "cancelled" in inf.panel.status_label.text().lower(), inf.panel.status_label.text()
    assert "AI prediction" not in parts.editing.history.undo_text
    assert (doc.mask == before).all()
    assert not inf.streaming.active and inf.streaming.bbox is None
    assert not any(layer.item.isVisible() for layer in layers)
    assert inf.panel.estimate_label.text() == ""
