"""The learning loop's background jobs (run in worker threads; no Qt, no document access).

Each job gets copies of what it needs and returns a small result object; the GUI thread
(the controllers in :mod:`desktop_app.controllers`) applies results to the document. Generator jobs yield
:class:`~unet_engine.progress.Progress` (or training reports) for the progress bar and
stop at the next check when their :class:`~unet_engine.progress.CancelToken` fires -- either because the
user pressed Cancel or because the worker was asked to quit (window close, shutdown),
which also ends a *paused* fine-tuning run.

Fine-tuning itself runs in a separate process (:mod:`unet_engine.jobs.training_process`): a training
thread in the GUI process held the GIL long enough to stall the event loop 100-270 ms;
:func:`train_job` is only the thin thread that relays the child's reports.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import torch

from desktop_app.state.document import label_values_present
from desktop_app.state.effort import correction_stats
from desktop_app.state.review import ReviewState
from unet_engine.data.case_identity import content_hash
from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.devices import MemoryUse, choose_device, run_description
from unet_engine.errors import CancelledError
from unet_engine.inference.predict import predict_volume
from unet_engine.progress import CancelToken, Progress
from unet_engine.projects import load_project
from unet_engine.registry.versions import ModelRegistry
from unet_engine.jobs.training_process import STOP_TIMEOUT_S, TrainingProcess, start_training_process
from unet_engine.training.fine_tune import EpochReport, StepReport, TrainResult  # noqa: F401 - unpickled in this process
from unet_engine.volume import Volume

# The engine modules are imported here, at app start, not lazily in the worker: an import
# in a worker thread compiles/executes module code holding the GIL for 100+ ms, which
# stalled the GUI thread at the start of the first fine-tuning run (bench/responsiveness_bench.py).
# (unet_engine.training.fine_tune is imported for the report classes the training process sends back.)

log = logging.getLogger(__name__)


def attach_worker(token: CancelToken, worker: Any) -> None:
    """Make ``token`` fire when ``worker`` is asked to quit (``worker.quit()``)."""
    token.also = lambda: bool(getattr(worker, "abort_requested", False))


def device_description(device: Any = "auto") -> str:
    """"CPU" or the GPU's name, e.g. "NVIDIA H100 80GB HBM3 (cuda:0)"."""
    dev = choose_device(device)
    if dev.type == "cuda":
        try:
            return f"{torch.cuda.get_device_name(dev)} ({dev})"
        except Exception:  # noqa: BLE001 - the name is cosmetic
            return str(dev)
    if dev.type == "mps":
        return "Apple GPU (mps)"
    return "CPU"


# ----- inference -------------------------------------------------------------------------------
@dataclass
class InferenceResult:
    model: Any
    card: Any
    path: Path
    labels: np.ndarray | None  # full-volume labels (None when only a region was predicted)
    region_labels: np.ndarray
    region: tuple[slice, slice, slice] | None
    uncertainty: np.ndarray  # full volume, float32 (0 outside the region)
    review: ReviewState
    device: str
    seconds: float
    precision: str = "float32"  # the network's arithmetic (float16 / bfloat16 autocast, or float32)
    memory: MemoryUse | None = None  # the GPU memory used at most (None off a GPU)

    @property
    def how(self) -> str:
        """Where and how it ran, e.g. "CPU (bfloat16)" or "CUDA ... (float16, peak GPU memory ...)"."""
        return run_description(self.device, self.precision, self.memory)


def inference_job(path: Path, cached: tuple[Any, Any] | None, volume: Volume, *, tta: bool = False,
                  region: tuple[slice, slice, slice] | None = None, review_axis: int = 0,
                  focus: tuple[int, int, int] | None = None, focus_axis: int | None = None,
                  cancel: CancelToken | None = None, device: str = "auto"):
    """Load the model (unless ``cached``) and segment ``volume``; returns :class:`InferenceResult`.

    With a ``focus`` the slice of ``focus_axis`` through it comes first and finished parts are
    yielded as :class:`~unet_engine.inference.streaming.PartialProgress` (see ``predict_volume``)."""
    yield Progress(0.0, "loading the model")
    if cached is None:
        model, card = load_checkpoint(path, device="cpu")
    else:
        model, card = cached
    if cancel is not None:
        cancel.raise_if_cancelled("inference")
    dev = choose_device(device)
    pred = yield from predict_volume(model, card, volume, tta=tta, device=dev, cancel=cancel, region=region,
                                     focus=focus, focus_axis=focus_axis)
    yield Progress(1.0, "finishing")
    if pred.region is None:
        unc = np.ascontiguousarray(pred.uncertainty, dtype=np.float32)
        labels = pred.labels
    else:
        unc = np.zeros(volume.shape, np.float32)
        unc[pred.region] = pred.uncertainty
        labels = None
    review = ReviewState.from_uncertainty(unc, axis=review_axis)
    return InferenceResult(model, card, Path(path), labels, pred.labels, pred.region, unc, review,
                           device_description(dev), pred.seconds, pred.precision, pred.memory)


# ----- add to training set ---------------------------------------------------------------------
@dataclass
class AddResult:
    """What :func:`add_case_job` did. ``case_id`` None: nothing was added, because the scan is
    already a case (``duplicate_of``) or the mask holds values the project has no label for
    (``unknown_labels``)."""

    case_id: str | None
    dataset: Path
    duplicate_of: str | None = None
    voxels_changed: int | None = None
    voxels_total: int = 0
    dice: dict[str, float | None] = field(default_factory=dict)  # None: in neither the prediction nor the correction
    replaced: bool = False
    split: str = ""
    unknown_labels: list[int] = field(default_factory=list)
    cases: int = 0
    val_cases: int = 0


def add_case_job(project_folder: Path, volume: Volume, mask: np.ndarray, prediction: np.ndarray | None,
                 model_version: str | None, *, replace: bool = False, reviewer: str | None = None) -> AddResult:
    """Store scan + corrected mask (+ edited-voxel mask vs ``prediction``) in the dataset of the
    project in ``project_folder``; nothing else is written. A mask value the project has no
    label for is never remapped: the result lists it and nothing is added."""
    project = load_project(project_folder)
    present = label_values_present(mask)
    unknown = project.unknown_values(present)
    if unknown:
        return AddResult(None, project.dataset_folder, unknown_labels=unknown)
    ds = project.dataset()
    folder = ds.folder
    edited = None
    changed: int | None = None
    dice: dict[str, float | None] = {}
    names = {int(k): v for k, v in ds.labels.items()}
    if prediction is not None and prediction.shape == mask.shape:
        edited, changed, dice = correction_stats(prediction, mask, names)
    if not replace:
        existing = ds.find_hash(content_hash(volume))
        if existing is not None:
            return AddResult(None, folder, duplicate_of=existing.id)
    cid = ds.add_case(volume, mask, edited=edited, model_version=model_version, reviewer=reviewer,
                      source_path=volume.source_path, replace=replace)
    split = ds.get(cid).split
    return AddResult(cid, folder, None, changed, int(mask.size), dice, replace, split,
                     cases=len(ds), val_cases=len(ds.val_cases()))


# ----- compare two versions --------------------------------------------------------------------
@dataclass
class CompareResult:
    a: str
    b: str
    difference: np.ndarray  # float32 1 where the versions disagree
    voxels_differ: int
    dice: dict[str, float | None]  # None: the label is in neither version's labels


def compare_job(registry_root: Path, a: str, b: str, volume: Volume, cancel: CancelToken | None = None,
                device: str = "auto"):
    """Run versions ``a`` and ``b`` on ``volume``; returns :class:`CompareResult`."""
    reg = ModelRegistry(registry_root)
    dev = choose_device(device)
    out = []
    for n, v in enumerate((a, b)):
        yield Progress(n / 2, f"loading {v}")
        model, card = reg.load(v, "cpu")
        gen = predict_volume(model, card, volume, device=dev, cancel=cancel)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                out.append((stop.value, card))
                break
            yield Progress(n / 2 + p.fraction / 2, f"{v}: {p.message}", p.step, p.total)
    (pa, card), (pb, _) = out
    _, changed, dice = correction_stats(pa.labels, pb.labels, {int(k): v for k, v in card.labels.items()})
    diff = (pa.labels != pb.labels).astype(np.float32)
    return CompareResult(a, b, diff, changed, dice)


# ----- fine-tune (in a child process) ------------------------------------------------------------
@dataclass
class ProcessSlot:
    """Where :func:`train_job` puts the :class:`TrainingProcess` it starts, so the GUI can stop it
    even when the worker is abandoned between two reports (quit() during a yield)."""

    process: TrainingProcess | None = None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc = self.process
        if proc is not None and (proc.is_alive() or not proc.done):
            proc.stop(timeout_s)


def train_job(config: Any, dataset_folder: Path, registry_root: Path, from_version: str | None,
              pause: threading.Event, cancel: CancelToken, *, segloop_home: Path | None = None,
              slot: ProcessSlot | None = None, poll_s: float = 0.05, stop_timeout_s: float = 8.0,
              resume: bool = False, promote: bool = False, fit_minutes: float | None = None):
    """Run :func:`unet_engine.training.fine_tune.fine_tune` in a spawned child process
    (:mod:`unet_engine.jobs.training_process`); yields its reports, returns its TrainResult.

    This worker thread only waits on the report queue (the GIL is free while it waits), forwards
    ``pause`` to the child every ``poll_s`` and, when ``cancel`` fires (Cancel, window close,
    worker quit), cancels the child and waits ``stop_timeout_s`` before terminating it. Child
    errors are re-raised here as the same SegLoop error class (a death as TrainingProcessError).
    ``resume``: continue the dataset's saved (paused/cancelled) run instead of starting one.
    ``fit_minutes``: the child fits the schedule to that many minutes before training.
    ``promote``: make the new version the active one (a project's first model).
    """
    proc = start_training_process(config, dataset_folder, registry_root, from_version, segloop_home=segloop_home,
                                  resume=resume, promote=promote, fit_minutes=fit_minutes)
    if slot is not None:
        slot.process = proc
    try:
        while not proc.done:
            if cancel.cancelled:
                proc.stop(stop_timeout_s)  # no more yields: the worker may have been asked to quit
                break
            if pause.is_set() != proc.paused:
                proc.pause() if pause.is_set() else proc.resume()
            for item in proc.poll(timeout=poll_s):
                yield item
    finally:
        proc.stop(stop_timeout_s)  # a no-op once the child has exited; cancel -> join -> terminate otherwise
    if proc.error is not None:
        raise proc.error.to_exception()
    if proc.result is None:
        raise CancelledError("fine-tuning cancelled")
    return proc.result


# ----- model versions ------------------------------------------------------------------------------
def registry_job(registry_root: Path, action: str, version: str | None = None) -> str | None:
    """``promote`` / ``rollback`` / ``delete`` a registry version; returns the version concerned
    (the new active one for rollback). Runs in a worker: the registry lock may be held by a
    training process registering its new version."""
    reg = ModelRegistry(registry_root)
    if action == "promote":
        return reg.promote(str(version)).version
    if action == "rollback":
        return reg.rollback().version
    if action == "delete":
        reg.delete(str(version))
        return version
    raise ValueError(f"unknown registry action {action!r}")
