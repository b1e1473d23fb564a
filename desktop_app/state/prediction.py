"""The last AI prediction on the open scan (no Qt).

The inference controller records the mask exactly as the model predicted it; the
dataset controller reads it when a case is added, to count what the reviewer changed
and to store the edited-voxel mask. A prediction belongs to one scan (the
:class:`~unet_engine.volume.Volume` object it was made on) and one model version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PredictionState:
    """``mask`` as predicted on ``volume`` by ``version`` (all None: no prediction)."""

    mask: np.ndarray | None = None
    volume: Any = None
    version: str | None = None

    def record(self, mask: np.ndarray, volume: Any, version: str | None) -> None:
        self.mask, self.volume, self.version = mask, volume, version

    def clear(self) -> None:
        self.mask, self.volume, self.version = None, None, None

    def for_volume(self, volume: Any) -> tuple[np.ndarray | None, str | None]:
        """``(mask, version)`` when the prediction was made on ``volume``, else ``(None, None)``."""
        if self.mask is None or volume is None or self.volume is not volume:
            return None, None
        return self.mask, self.version
