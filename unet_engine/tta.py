"""Flip test-time augmentation and the per-voxel summaries computed on the device.

With TTA the network runs on the input and its mirror images (in-plane flips for 2D and
2.5D models: 4 variants; all axes for 3D models: 8 variants); the softmax outputs are
flipped back and averaged. ``disagreement`` is the fraction of variants whose own label
differs from the averaged label (0 = all agree, 1 = none agrees with the consensus).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch


def flip_sets(spatial_dims: int) -> list[tuple[int, ...]]:
    """Tensor dims to flip for each TTA variant (identity first), for ``[B, C, *spatial]`` tensors."""
    axes = [2 + a for a in range(spatial_dims)]
    out: list[tuple[int, ...]] = []
    for r in range(len(axes) + 1):
        out.extend(itertools.combinations(axes, r))
    return out


def softmax_probs(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities ``[B, C, ...]`` (float32) and, with TTA, the disagreement ``[B, ...]``."""
    if not tta:
        return torch.softmax(forward(x).float(), dim=1), None
    variants = flip_sets(x.ndim - 2)
    total: torch.Tensor | None = None
    votes = []
    for dims in variants:
        xi = torch.flip(x, dims) if dims else x
        p = torch.softmax(forward(xi).float(), dim=1)
        if dims:
            p = torch.flip(p, dims)
        votes.append(p.argmax(dim=1).to(torch.uint8))
        total = p if total is None else total.add_(p)
    assert total is not None
    probs = total.div_(len(variants))
    consensus = probs.argmax(dim=1).to(torch.uint8)
    differ = torch.zeros(consensus.shape, dtype=torch.float32, device=consensus.device)
    for v in votes:
        differ += (v != consensus).float()
    return probs, differ.div_(len(variants))


def labels_and_entropy(probs: torch.Tensor, class_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax labels (uint8) and entropy normalised to 0..1 by ``log(C)`` (float32)."""
    c = probs.shape[class_dim]
    labels = probs.argmax(dim=class_dim).to(torch.uint8 if c <= 256 else torch.int32)
    p = probs.float().clamp_min(1e-12)
    ent = -(p * p.log()).sum(dim=class_dim)
    if c > 1:
        ent = ent.div_(math.log(c))
    return labels, ent.clamp_(0.0, 1.0)
