"""The learning-rate schedule: linear warm-up, then cosine decay, by steps or by the clock.

Built from torch's schedulers (``SequentialLR(LinearLR, CosineAnnealingLR)``). A run with a
time budget also passes the seconds it has trained: when the clock is further along the
budget than the step count is along the plan (a busy machine), the schedule is advanced to
the clock's position, so the run still ends at the lowest rate by its deadline instead of
being cut at a high one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

#: Share of a time budget by which the learning rate has decayed (the rest: final steps at the lowest rate).
TIME_SCHEDULE_SHARE = 0.95


class LRSchedule:
    """Warm-up over ``warmup`` steps to the optimizer's rate, cosine down to ``min_ratio`` of it at ``total``.

    ``deadline_s``: seconds by which the cosine must have reached its end (None: steps only).
    Call :meth:`advance` after every optimizer step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup: int, total: int, min_ratio: float,
                 deadline_s: float | None = None) -> None:
        self.warmup, self.total = max(0, int(warmup)), max(1, int(total))
        self.deadline_s = deadline_s
        base = self._base = float(optimizer.param_groups[0]["lr"])
        self._min_ratio = float(min_ratio)
        cosine = CosineAnnealingLR(optimizer, T_max=max(1, self.total - self.warmup), eta_min=base * float(min_ratio))
        self.scheduler: LRScheduler = cosine
        if self.warmup:
            ramp = LinearLR(optimizer, start_factor=1.0 / self.warmup, end_factor=1.0, total_iters=max(1, self.warmup - 1))
            self.scheduler = SequentialLR(optimizer, [ramp, cosine], milestones=[self.warmup])

    @property
    def position(self) -> int:
        """Steps the schedule has advanced (at least the optimizer steps taken)."""
        return int(self.scheduler.last_epoch)

    def target(self, steps_done: int, elapsed_s: float) -> int:
        """The position the schedule should be at after ``steps_done`` steps and ``elapsed_s`` seconds."""
        pos = int(steps_done)
        if self.deadline_s and pos >= self.warmup:
            share = min(1.0, max(0.0, elapsed_s / self.deadline_s))
            pos = max(pos, self.warmup + math.floor(share * (self.total - self.warmup)))
        return min(pos, self.total)  # beyond its end the cosine would rise again

    def advance(self, steps_done: int, elapsed_s: float = 0.0) -> None:
        while self.position < self.target(steps_done, elapsed_s):
            self.scheduler.step()

    def state_at(self, position: int) -> dict[str, Any]:
        """The state of this schedule advanced to ``position`` (to place one whose steps were not
        recorded, e.g. a run saved before this class existed), without changing any rate."""
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=self._base)
        other = LRSchedule(opt, warmup=self.warmup, total=self.total, min_ratio=self._min_ratio)
        opt.step()  # no gradients: changes nothing, but torch expects a step before the scheduler's
        other.advance(position)
        return other.state_dict()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
