"""Planning a project's first model from its dataset's fingerprint (nnU-Net style).

Public API (what ``segloop train --project NAME --minutes M`` and the GUI's plan dialog call)::

    from unet_engine.planning import plan_first_model, TrainingPlan

    plan = plan_first_model(dataset, modality, *, minutes, device="auto", calibrate=True,
                            threads=None, overrides=None) -> TrainingPlan
    plan.summary_lines() -> list[str]           # the dialog / CLI text: each choice and why
    plan = plan.with_changes(dims=3, minutes=20) # "Advanced": fix fields, re-plan the rest
                                                 # (EDITABLE names; nonsense -> SegLoopError)
    plan = calibrate_plan(plan, dataset)         # after changes: measure the new network's steps
    config = plan.train_config(seed=0)           # -> TrainConfig
    fine_tune(config, dataset=dataset, registry=registry, from_version="scratch")
    TrainingPlan.from_dict(plan.to_dict())       # a project stores plan.to_dict()

``dataset`` is a :class:`~unet_engine.data.dataset.RetrainingDataset`; ``modality`` is the
project's "CT", "MR", "US" or "other" ("MRI" = MR; None: the dataset's own).

A fine-tune of a planned model takes the plan's data settings and per-case rate::

    TrainConfig(**finetune_settings(project.plan, start_checkpoint_folder))

Fine-tuning an existing model for a time budget (any start model)::

    config = fit_config_to_minutes(config, dataset, minutes, registry=registry, from_version=None)

Lower-level: :func:`fingerprint_dataset` -> :class:`DatasetFingerprint`;
:func:`make_plan` (estimated step time, no training); :func:`measure_step_seconds`.
"""

from __future__ import annotations

from unet_engine.planning.calibrate import calibrate_plan, fit_config_to_minutes, measure_step_seconds, plan_first_model
from unet_engine.planning.fingerprint import (
    MODALITIES,
    CaseFingerprint,
    DatasetFingerprint,
    fingerprint_dataset,
    normalize_modality,
)
from unet_engine.planning.finetune import finetune_settings
from unet_engine.planning.plan import EDITABLE, TrainingPlan, make_plan

__all__ = [
    "EDITABLE",
    "MODALITIES",
    "CaseFingerprint",
    "DatasetFingerprint",
    "TrainingPlan",
    "calibrate_plan",
    "finetune_settings",
    "fingerprint_dataset",
    "fit_config_to_minutes",
    "make_plan",
    "measure_step_seconds",
    "normalize_modality",
    "plan_first_model",
]
