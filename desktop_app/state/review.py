"""Uncertainty review state (no Qt): which slices the model was unsure about, which were checked.

After a prediction, the per-voxel uncertainty (normalised entropy, 0..1) is reduced to two
numbers per slice along the review axis (the axial view's array axis): the maximum and the
mean. A slice is *uncertain* when its maximum reaches ``threshold`` (default 0.5: the
model's top two classes were close somewhere in it). Uncertain slices are visited in order
of decreasing mean uncertainty (the slice with the most doubtful voxels first).

Review policy (documented choice): "Next uncertain slice" marks the slice the previous
jump landed on as reviewed -- the reviewer has looked at it and moves on -- and then goes
to the most uncertain slice not yet reviewed. "Mark slice reviewed" marks the current
slice explicitly (useful after scrolling to a slice by hand). Marking a slice that is not
uncertain is accepted but does not change the "n of m" count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_THRESHOLD = 0.5


def slice_stats(uncertainty: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice (max, mean) of ``uncertainty`` along ``axis`` (float32 arrays)."""
    u = np.asarray(uncertainty)
    other = tuple(a for a in range(u.ndim) if a != axis)
    if u.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return (u.max(axis=other).astype(np.float32), u.mean(axis=other, dtype=np.float64).astype(np.float32))


@dataclass
class ReviewState:
    """Per-slice uncertainty and the set of reviewed slices of one prediction."""

    slice_max: np.ndarray
    slice_mean: np.ndarray
    axis: int = 0
    threshold: float = DEFAULT_THRESHOLD
    reviewed: set[int] = field(default_factory=set)
    last_jump: int | None = None

    @classmethod
    def from_uncertainty(cls, uncertainty: np.ndarray, axis: int = 0,
                         threshold: float = DEFAULT_THRESHOLD) -> "ReviewState":
        smax, smean = slice_stats(uncertainty, axis)
        return cls(smax, smean, axis, threshold)

    @classmethod
    def empty(cls) -> "ReviewState":
        return cls(np.zeros(0, np.float32), np.zeros(0, np.float32))

    # ----- queries -------------------------------------------------------------------------
    @property
    def uncertain_slices(self) -> list[int]:
        """Uncertain slice indices, most uncertain (highest mean) first."""
        idx = np.flatnonzero(self.slice_max >= self.threshold)
        return [int(i) for i in idx[np.argsort(-self.slice_mean[idx], kind="stable")]]

    @property
    def n_uncertain(self) -> int:
        return int(np.count_nonzero(self.slice_max >= self.threshold))

    @property
    def n_reviewed(self) -> int:
        """Uncertain slices marked reviewed."""
        return sum(1 for i in self.reviewed if 0 <= i < len(self.slice_max) and self.slice_max[i] >= self.threshold)

    def summary(self) -> str:
        if len(self.slice_max) == 0:
            return "No uncertainty map yet (run the model)"
        if self.n_uncertain == 0:
            return "No uncertain slices"
        return f"{self.n_reviewed} of {self.n_uncertain} uncertain slices reviewed"

    def is_done(self) -> bool:
        return self.n_reviewed >= self.n_uncertain

    # ----- changes -------------------------------------------------------------------------
    def mark_reviewed(self, index: int, reviewed: bool = True) -> None:
        if reviewed:
            self.reviewed.add(int(index))
        else:
            self.reviewed.discard(int(index))

    def peek_next(self) -> int | None:
        """The most uncertain slice not reviewed yet (None when all are)."""
        for i in self.uncertain_slices:
            if i not in self.reviewed and i != self.last_jump:
                return i
        return None

    def next_uncertain_slice(self) -> int | None:
        """Mark the slice of the previous jump reviewed and return the next one to look at."""
        if self.last_jump is not None:
            self.reviewed.add(self.last_jump)
        nxt = self.peek_next()
        self.last_jump = nxt
        return nxt
