"""Training losses: cross-entropy + soft Dice, with an optional per-voxel weight map.

``DiceCELoss(logits [B, C, (D,) H, W], target [B, (D,) H, W] int)`` works in 2D and 3D.
The weight map (same shape as ``target``) scales each voxel's cross-entropy, e.g. extra
weight on voxels a user corrected; the CE term is the weighted mean. Soft Dice is a
"batch Dice" (sums over the batch and space per class, as nnU-Net does), which stays
stable when a class is absent from some slices; background is excluded unless
``include_background``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceCELoss(nn.Module):
    """``ce_weight * CE + dice_weight * (1 - soft Dice)``."""

    def __init__(
        self, num_classes: int, ce_weight: float = 1.0, dice_weight: float = 1.0, include_background: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("DiceCELoss needs num_classes >= 2")
        self.num_classes = num_classes
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.include_background = include_background
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be [B, {self.num_classes}, ...], got {tuple(logits.shape)}")
        if target.ndim == logits.ndim:  # [B, 1, ...] -> [B, ...]
            target = target[:, 0]
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        target = target.long()
        logits = logits.float()
        loss = logits.new_zeros(())
        if self.ce_weight:
            ce = F.cross_entropy(logits, target, reduction="none")
            if weight_map is not None:
                w = weight_map.to(ce.dtype)
                if w.shape != ce.shape:
                    w = w.reshape(ce.shape)
                ce = (ce * w).sum() / w.sum().clamp_min(1e-8)
            else:
                ce = ce.mean()
            loss = loss + self.ce_weight * ce
        if self.dice_weight:
            loss = loss + self.dice_weight * (1.0 - self.soft_dice(logits, target))
        return loss

    def soft_dice(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean soft Dice over the scored classes (batch Dice)."""
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, self.num_classes).movedim(-1, 1).to(probs.dtype)
        dims = (0,) + tuple(range(2, probs.ndim))
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        per_class = (2.0 * inter + self.smooth) / (denom + self.smooth)
        if not self.include_background:
            per_class = per_class[1:]
        return per_class.mean()
