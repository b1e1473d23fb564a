"""What a fine-tuning run reports: after each step, after each validation, and at its end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepReport:
    """After each optimisation step (``paused`` reports are sent when a pause begins)."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    images_per_s: float
    elapsed_s: float
    paused: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class EpochReport:
    """After each validation (epoch 0 = the starting model, before any step)."""

    epoch: int
    step: int
    train_loss: float | None
    val_loss: float | None
    val_dice: dict[str, float]
    val_mean_dice: float | None
    best_mean_dice: float | None
    improved: bool
    epoch_time_s: float
    elapsed_s: float
    patience_left: int


@dataclass
class TrainResult:
    """The end of a run: the new registry version and how the run went."""

    version: str | None  # the new registry version (None on ranks other than 0 when it was not broadcast)
    checkpoint_path: Path | None
    parent: str | None
    steps: int
    epochs: int
    stopped: str  # "completed", "early-stopping" or "time-limit"
    best_epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    elapsed_s: float = 0.0
