"""Minutes into steps: measure real training steps on the device, then fit the schedule.

A run given minutes gets a complete cosine schedule: a few steps of the real trainer
(:func:`unet_engine.training.fine_tune.fine_tune`, same sampler, augmentation, loss and network, into
a throw-away registry) measure the seconds per step, and ``max_steps`` is set so the
schedule ends inside the budget; ``max_minutes`` stays as a safety cut. Given its steps a
run is deterministic on the CPU and resumable, which a schedule driven by the clock would
not be (``bench/acdc_first_model.py --calibration`` measures how close the planned minutes
come to the wall time).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from unet_engine.errors import SegLoopError
from unet_engine.planning.fingerprint import DatasetFingerprint, fingerprint_dataset
from unet_engine.planning.plan import FIT_SHARE, MIN_STEPS, TrainingPlan, make_plan
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.config import TrainConfig

log = logging.getLogger(__name__)

CALIBRATION_STEPS = 6  # timed steps
CALIBRATION_WARMUP = 2  # untimed first steps (allocator, first case decodes)
MAX_FIT_EPOCHS = 10  # a run fitted to minutes validates at most this often


def measure_step_seconds(config: TrainConfig, dataset: Any, *, from_version: str = "scratch",
                         steps: int = CALIBRATION_STEPS, warmup: int = CALIBRATION_WARMUP) -> float:
    """Median seconds per training step of ``config`` on ``dataset`` (nothing is kept).

    ``from_version`` is "scratch" or a checkpoint folder. The steps run in a temporary
    registry with validation off; the dataset is only read.
    """
    from unet_engine.training.fine_tune import StepReport, fine_tune

    if steps < 1 or warmup < 0:
        raise SegLoopError(f"calibration needs >= 1 timed step (got steps={steps}, warmup={warmup})")
    cfg = config.replace(max_steps=warmup + steps, steps_per_epoch=warmup + steps, max_minutes=None, val_max_cases=0,
                         validate_at_start=False, checkpoint_every_steps=10**9, patience=0)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="segloop-calibrate-") as tmp:
        gen = fine_tune(cfg, dataset=dataset, registry=ModelRegistry(Path(tmp) / "registry"), from_version=from_version,
                        state_dir=Path(tmp) / "state")
        last = None
        try:
            for item in gen:
                if isinstance(item, StepReport) and not item.paused:
                    now = time.perf_counter()
                    if last is not None and item.step > warmup:
                        times.append(now - last)
                    last = now
        finally:
            gen.close()
    if not times:
        raise SegLoopError("calibration: no training step was timed")
    return float(statistics.median(times))


def calibrate_plan(plan: TrainingPlan, dataset: Any, *, steps: int = CALIBRATION_STEPS, rounds: int = 1) -> TrainingPlan:
    """The plan with its step time measured on its device and its steps refitted to the minutes.

    By default (``rounds=1``) only the number of steps follows the measurement: the network,
    patch and batch stay what the fingerprint and the device kind gave, so a busy machine
    gets fewer steps of the same plan rather than another plan. With ``rounds > 1`` the
    measured speed replaces the device estimate and the plan is made again (and measured
    again) when that changes its batch or patch.
    """
    fp = DatasetFingerprint.from_dict(plan.fingerprint)
    current = plan
    for i in range(max(1, rounds)):
        seconds = measure_step_seconds(current.train_config(), dataset, steps=steps)
        flops = current.flops_per_s * current.seconds_per_step / seconds
        log.info("calibration %d: %.3f s/step measured vs %.3f estimated (%.3g FLOP/s)", i + 1, seconds,
                 current.seconds_per_step, flops)
        replanned = make_plan(fp, device=current.device, threads=current.threads, overrides=dict(current.user_set),
                              flops_per_s=flops)
        if replanned.calibration_key() == current.calibration_key() or i == rounds - 1:
            return current._with_step_time(seconds, "calibrated", flops)
        current = replanned
    return current  # pragma: no cover - the loop always returns


def plan_first_model(dataset: Any, modality: str | None, *, minutes: float, device: str = "auto",
                     calibrate: bool = True, threads: int | None = None,
                     overrides: dict[str, Any] | None = None) -> TrainingPlan:
    """Fingerprint ``dataset``, plan a first model for ``minutes`` on ``device``, measure its steps.

    The one call ``segloop train --project NAME --minutes M`` and the GUI's plan dialog need;
    then ``fine_tune(plan.train_config(), dataset=dataset, registry=..., from_version="scratch")``.
    """
    fp = fingerprint_dataset(dataset, modality)
    plan = make_plan(fp, device=device, minutes=minutes, threads=threads, overrides=overrides)
    return calibrate_plan(plan, dataset) if calibrate else plan


def fit_config_to_minutes(config: TrainConfig, dataset: Any, minutes: float, *, registry: ModelRegistry | None = None,
                          from_version: str | None = None, steps: int = CALIBRATION_STEPS) -> TrainConfig:
    """A fine-tune's config with ``max_steps`` measured to fit ``minutes`` and ``max_minutes=minutes``.

    For ``segloop train --minutes M`` without steps (any start model): the cosine schedule
    then decays inside the budget instead of being cut mid-way by the clock. Validation
    time is estimated from the step time and the number of validation cases.
    """
    if not minutes > 0:
        raise SegLoopError(f"minutes must be > 0 (got {minutes!r})")
    source = _start_folder(registry, from_version, dataset)
    seconds = measure_step_seconds(config, dataset, from_version=source, steps=steps)
    n_val = min(len(dataset.val_cases()), config.val_max_cases or 10**9)
    # validations the run makes (its epochs; at most MAX_FIT_EPOCHS: a clock-bounded config may say 1000)
    epochs_guess = max(1, min(MAX_FIT_EPOCHS, config.total_steps // max(1, config.steps_per_epoch)))
    val_s = n_val * epochs_guess * seconds * 0.5  # a validation case costs about half a training step
    usable = FIT_SHARE * minutes * 60.0 - val_s - 2.0
    total = int(usable // seconds)
    if total < MIN_STEPS:
        raise SegLoopError(f"{minutes:g} min allow only {max(0, total)} training steps of {seconds:.2f} s; "
                           f"give more minutes")
    per_epoch = max(1, total // epochs_guess)
    log.info("%g min -> %d steps of %.3f s (%d per epoch)", minutes, total, seconds, per_epoch)
    return config.replace(max_steps=total, steps_per_epoch=per_epoch, max_minutes=float(minutes),
                          warmup_steps=min(config.warmup_steps, max(1, total // 10)))


def _start_folder(registry: ModelRegistry | None, from_version: str | None, dataset: Any) -> str:
    """A checkpoint folder (or "scratch") standing for ``from_version``, for a throw-away run:
    the start :func:`unet_engine.training.fine_tune.fine_tune` would pick (the bundled model only when
    its labels agree with the dataset's)."""
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.training.setup import bundled_label_clash

    choice = (from_version or "").strip()
    if choice == "scratch":
        return "scratch"
    if choice and Path(choice).expanduser().is_dir():
        return str(Path(choice).expanduser())
    if choice == "default" or (not choice and (registry is None or registry.active is None)):
        folder = BUNDLED_MODELS / "default"
        usable = (folder / "card.json").is_file() and not bundled_label_clash(dataset)
        return str(folder) if usable else "scratch"
    if registry is None:
        raise SegLoopError(f"cannot find model version {choice!r} without a registry")
    return str(registry.get(registry.resolve(choice or "active")).path)


__all__ = ["calibrate_plan", "fit_config_to_minutes", "measure_step_seconds", "plan_first_model"]
