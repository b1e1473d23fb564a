"""Small networks for inference tests and benches."""

from __future__ import annotations

import torch


class Pointwise(torch.nn.Module):
    """A 1x1x1 convolution to 3 classes: a network whose output does not depend on where windows sit."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 1)
        torch.nn.init.normal_(self.conv.weight, std=3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
