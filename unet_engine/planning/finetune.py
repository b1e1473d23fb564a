"""What a fine-tune takes from a project's saved training plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unet_engine.errors import SegLoopError
from unet_engine.planning.plan import TrainingPlan


def finetune_settings(plan_data: dict[str, Any] | None, start_folder: str | Path | None) -> dict[str, Any]:
    """TrainConfig fields for fine-tuning the checkpoint in ``start_folder`` from a project's
    ``plan.json`` data: the plan's patch, batch, augmentation, case cache and per-case learning
    rate (the rate the ACDC loop simulation was measured with) when the checkpoint has the
    planned network's shape; ``{}`` (the model's own settings apply) without a plan, for a
    checkpoint of another shape, or when either cannot be read."""
    if not plan_data or start_folder is None:
        return {}
    from unet_engine.model.checkpoint import load_card

    try:
        plan = TrainingPlan.from_dict(plan_data)
        spec = load_card(start_folder).spec
    except (SegLoopError, OSError, ValueError, KeyError, TypeError):
        return {}
    planned = {k: v for k, v in plan.model_spec().items() if k != "num_classes"}
    if {k: v for k, v in spec.to_dict().items() if k in planned} != planned:
        return {}  # another network (e.g. the bundled model a project started from)
    return dict(patch_size=list(plan.patch_size), batch_size=plan.batch_size, augment=dict(plan.augment),
                lr=plan.finetune_lr, cache_cases=plan.cache_cases, samples_per_case=plan.samples_per_case)
