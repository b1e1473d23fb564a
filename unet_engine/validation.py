"""Score a model on the retraining dataset's fixed validation split.

Predictions come from :func:`unet_engine.inference.predict_volume`, the very code the
app runs, on each case's original grid, so the validation Dice is the Dice a user would
see. Per case: Dice per label (1.0 when a label is absent from both prediction and
reference) and the Dice + CE loss of the predicted probabilities; the result is the mean
over cases. Sums are returned separately so distributed training can all-reduce them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine.checkpoint import ModelCard
from unet_engine.losses import DiceCELoss
from unet_engine.metrics import dice
from unet_engine.progress import CancelToken, run_generator

log = logging.getLogger(__name__)


@dataclass
class ValidationResult:
    """Mean validation metrics over ``cases`` cases."""

    dice: dict[str, float] = field(default_factory=dict)  # label name -> mean Dice
    loss: float | None = None
    cases: int = 0

    @property
    def mean_dice(self) -> float | None:
        return float(np.mean(list(self.dice.values()))) if self.dice and self.cases else None

    def as_metrics(self) -> dict[str, Any]:
        return {"val_dice": dict(self.dice), "val_mean_dice": self.mean_dice, "val_loss": self.loss,
                "val_cases": self.cases}


def validation_sums(model: nn.Module, card: ModelCard, dataset: Any, case_ids: list[str], labels: dict[int, str], *,
                    device: str | torch.device = "cpu", batch_size: int | None = None,
                    cancel: CancelToken | None = None, loss_fn: DiceCELoss | None = None) -> np.ndarray:
    """``[sum Dice per label..., sum loss, n cases]`` over ``case_ids`` (float64)."""
    from unet_engine.inference import predict_volume

    keys = sorted(labels)
    out = np.zeros(len(keys) + 2, np.float64)
    loss_fn = loss_fn or DiceCELoss(card.spec.num_classes)
    was_training = model.training
    model.eval()
    try:
        for cid in case_ids:
            if cancel is not None:
                cancel.raise_if_cancelled("validation")
            volume, label, _ = dataset.load_case(cid)
            pred = run_generator(predict_volume(model, card, volume, device=device, batch_size=batch_size,
                                                cancel=cancel, probabilities_dtype=np.float32))
            for i, k in enumerate(keys):
                out[i] += dice(pred.labels, label, int(k))
            with torch.no_grad():
                logp = torch.from_numpy(np.log(np.clip(pred.probabilities, 1e-7, 1.0)))[None]
                target = torch.from_numpy(label.astype(np.int64))[None]
                out[len(keys)] += float(loss_fn(logp, target))
            out[-1] += 1
    finally:
        model.train(was_training)
    return out


def result_from_sums(sums: np.ndarray, labels: dict[int, str]) -> ValidationResult:
    keys = sorted(labels)
    n = int(round(float(sums[-1])))
    if n == 0:
        return ValidationResult({}, None, 0)
    return ValidationResult({labels[k]: float(sums[i] / n) for i, k in enumerate(keys)}, float(sums[len(keys)] / n), n)


def evaluate_model(model: nn.Module, card: ModelCard, dataset: Any, cases: list[Any], *, device: str | torch.device = "cpu",
                   batch_size: int | None = None, cancel: CancelToken | None = None) -> ValidationResult:
    """Mean validation metrics of ``model`` on ``cases`` (CaseInfo or ids) of ``dataset``."""
    ids = [c if isinstance(c, str) else c.id for c in cases]
    labels = dataset.labels
    return result_from_sums(validation_sums(model, card, dataset, ids, labels, device=device, batch_size=batch_size,
                                            cancel=cancel), labels)
