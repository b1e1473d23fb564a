"""Score a model on the retraining dataset's fixed validation split.

Predictions come from :func:`unet_engine.inference.predict.predict_volume`, the very code the
app runs, on each case's original grid, so the validation Dice is the Dice a user would
see. Per case: Dice per label and the Dice + CE loss of the predicted probabilities; the
result is the mean over cases. A label absent from both prediction and reference is n/a
for that case (:func:`unet_engine.metrics.dice_or_none`): each label's mean is over the
cases where it is defined, a label defined in no case is left out of ``dice`` (listed in
``na_labels``), and the mean Dice is over the labels that have one. With fewer than
:data:`MIN_VALIDATION_CASES` cases a result is not a validation a user should trust
(:attr:`ValidationResult.reliable`); the app and the CLI say "no validation yet".
Sums are returned separately so distributed training can all-reduce them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine.model.checkpoint import ModelCard
from unet_engine.training.losses import DiceCELoss
from unet_engine.metrics import dice_or_none
from unet_engine.progress import CancelToken, run_generator

log = logging.getLogger(__name__)


#: A validation split smaller than this is not reported as a Dice ("no validation yet").
MIN_VALIDATION_CASES = 2


@dataclass
class ValidationResult:
    """Mean validation metrics over ``cases`` cases (labels n/a in every case left out of ``dice``)."""

    dice: dict[str, float] = field(default_factory=dict)  # label name -> mean Dice over cases where defined
    loss: float | None = None
    cases: int = 0
    na_labels: list[str] = field(default_factory=list)  # absent from prediction and reference in every case

    @property
    def mean_dice(self) -> float | None:
        return float(np.mean(list(self.dice.values()))) if self.dice and self.cases else None

    @property
    def reliable(self) -> bool:
        """Enough validation cases to show a Dice to the user."""
        return self.cases >= MIN_VALIDATION_CASES

    def as_metrics(self) -> dict[str, Any]:
        return {"val_dice": dict(self.dice), "val_mean_dice": self.mean_dice, "val_loss": self.loss,
                "val_cases": self.cases, "val_na_labels": list(self.na_labels)}


def validation_text(metrics: dict[str, Any]) -> str:
    """How a version's validation reads to a user: "no validation yet (1 case)" below
    :data:`MIN_VALIDATION_CASES` cases, else the mean and per-label Dice (n/a labels named)."""
    cases = metrics.get("val_cases")
    mean = metrics.get("val_mean_dice")
    if mean is None or (isinstance(cases, int) and cases < MIN_VALIDATION_CASES):
        n = f" ({cases} case{'s' if cases != 1 else ''})" if isinstance(cases, int) else ""
        return f"no validation yet{n}"
    per = ", ".join(f"{k} {v:.3f}" for k, v in (metrics.get("val_dice") or {}).items() if v is not None)
    na = metrics.get("val_na_labels") or []
    text = f"val mean Dice {mean:.3f} ({per}; {cases} cases)" if isinstance(cases, int) else f"val mean Dice {mean:.3f} ({per})"
    return text + (f"; n/a: {', '.join(na)}" if na else "")


def validation_sums(model: nn.Module, card: ModelCard, dataset: Any, case_ids: list[str], labels: dict[int, str], *,
                    device: str | torch.device = "cpu", batch_size: int | None = None,
                    cancel: CancelToken | None = None, loss_fn: DiceCELoss | None = None) -> np.ndarray:
    """``[sum Dice per label..., cases defined per label..., sum loss, n cases]`` over
    ``case_ids`` (float64)."""
    from unet_engine.inference.predict import predict_volume

    keys = sorted(labels)
    out = np.zeros(2 * len(keys) + 2, np.float64)
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
                d = dice_or_none(pred.labels, label, int(k))
                if d is not None:
                    out[i] += d
                    out[len(keys) + i] += 1
            with torch.no_grad():
                logp = torch.from_numpy(np.log(np.clip(pred.probabilities, 1e-7, 1.0)))[None]
                target = torch.from_numpy(label.astype(np.int64))[None]
                out[2 * len(keys)] += float(loss_fn(logp, target))
            out[-1] += 1
    finally:
        model.train(was_training)
    return out


def result_from_sums(sums: np.ndarray, labels: dict[int, str]) -> ValidationResult:
    """The :class:`ValidationResult` of :func:`validation_sums` (summed over processes)."""
    keys = sorted(labels)
    n = int(round(float(sums[-1])))
    if n == 0:
        return ValidationResult({}, None, 0)
    nk = len(keys)
    dice = {labels[k]: float(sums[i] / sums[nk + i]) for i, k in enumerate(keys) if sums[nk + i] > 0}
    na = [labels[k] for i, k in enumerate(keys) if sums[nk + i] == 0]
    return ValidationResult(dice, float(sums[2 * nk] / n), n, na)


def evaluate_model(model: nn.Module, card: ModelCard, dataset: Any, cases: list[Any], *, device: str | torch.device = "cpu",
                   batch_size: int | None = None, cancel: CancelToken | None = None) -> ValidationResult:
    """Mean validation metrics of ``model`` on ``cases`` (CaseInfo or ids) of ``dataset``."""
    ids = [c if isinstance(c, str) else c.id for c in cases]
    labels = dataset.labels
    return result_from_sums(validation_sums(model, card, dataset, ids, labels, device=device, batch_size=batch_size,
                                            cancel=cancel), labels)


def val_split_rescorer(registry: Any, dataset: Any, device: str | torch.device = "cpu") -> Callable[[str], dict[str, Any]]:
    """For ``ModelRegistry.compare(rescore=...)``: a version's metrics on ``dataset``'s validation split."""
    def rescore(version: str) -> dict[str, Any]:
        model, card = registry.load(version, device)
        return evaluate_model(model, card, dataset, dataset.val_cases(), device=device).as_metrics()

    return rescore
