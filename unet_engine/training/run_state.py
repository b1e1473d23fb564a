"""The typed, serialisable state of a fine-tuning run (apart from tensors and RNGs).

:class:`RunState` is what a resumed run needs besides weights, optimizer and generators:
the step and epoch, early-stopping bookkeeping, the running epoch loss and the curves. It
round-trips through JSON (``to_dict``/``from_dict``) inside the saved training state
(:mod:`unet_engine.training.state`); :meth:`RunState.copy` is the snapshot a run restores
when validation is cancelled half-way.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from unet_engine.training.validation import ValidationResult


@dataclass
class Curves:
    """One entry per validation (or per epoch without one): what the GUI plots and a version keeps."""

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_mean_dice: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_dice: dict[str, list[float | None]] = field(default_factory=dict)

    @classmethod
    def empty(cls, label_names: list[str]) -> Curves:
        return cls(val_dice={n: [] for n in label_names})

    def append(self, *, epoch: int, step: int, train_loss: float | None, result: ValidationResult | None,
               lr: float) -> None:
        """Add one point; ``result`` None: an epoch without validation."""
        self.epoch.append(epoch)
        self.step.append(step)
        self.train_loss.append(train_loss)
        self.val_loss.append(None if result is None else result.loss)
        self.val_mean_dice.append(None if result is None else result.mean_dice)
        self.lr.append(lr)
        for name, values in self.val_dice.items():
            values.append(None if result is None else result.dice.get(name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curves:
        return cls(**{f.name: copy.deepcopy(data[f.name]) for f in fields(cls)})


@dataclass
class RunState:
    """Where a run stands; every field is plain data (JSON)."""

    step: int = 0
    epoch: int = 0
    best: float | None = None  # best validation mean Dice so far (-inf when validation gives none)
    best_epoch: int = 0
    bad_epochs: int = 0  # validations in a row without improvement (early stopping)
    elapsed: float = 0.0  # training seconds over all sessions, pauses excluded
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0
    baseline: dict[str, Any] | None = None  # the starting model's validation metrics
    curves: Curves = field(default_factory=Curves)
    pending_end: bool = False  # an epoch's last step ran; its end (validation) has not been done yet
    last_lr: float | None = None

    def take_epoch_loss(self) -> float:
        """The mean training loss of the epoch ending now; restarts the sum."""
        loss = self.epoch_loss_sum / max(1, self.epoch_loss_n)
        self.epoch_loss_sum, self.epoch_loss_n = 0.0, 0
        return loss

    def copy(self) -> RunState:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "curves"},
                "curves": self.curves.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run-state field(s) {', '.join(unknown)}")
        values = {k: copy.deepcopy(v) for k, v in data.items() if k != "curves"}
        return cls(**values, curves=Curves.from_dict(data["curves"]))

    def metrics(self, val_cases: int) -> dict[str, Any]:
        """A version's metrics: the best epoch's validation (labels n/a in every validation case
        listed in ``val_na_labels``, never a Dice), with the number of cases behind it."""
        c = self.curves
        out: dict[str, Any] = {"steps": self.step, "epochs": self.epoch, "best_epoch": self.best_epoch,
                               "val_cases": val_cases}
        if self.best is not None and self.best_epoch in c.epoch:
            i = c.epoch.index(self.best_epoch)
            out["val_dice"] = {n: v[i] for n, v in c.val_dice.items() if v[i] is not None}
            out["val_na_labels"] = [n for n, v in c.val_dice.items() if v[i] is None]
            out["val_mean_dice"] = c.val_mean_dice[i]
            out["val_loss"] = c.val_loss[i]
        if self.baseline:
            out["baseline_val_dice"] = self.baseline["val_dice"]
            out["baseline_val_mean_dice"] = self.baseline["val_mean_dice"]
        return out
