"""The synthetic 512x512x400 body-like CT the viewer and editing benchmarks draw on."""

from __future__ import annotations

import numpy as np

SHAPE = (400, 512, 512)  # (k, j, i)
SPACING = (1.0, 0.8, 0.8)  # mm, (k, j, i)


def make_ct(seed: int = 0, second_organ: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """An int16 volume (air, soft tissue, organs, bone, noise) and its uint8 mask
    (1 organ, 2 second organ when ``second_organ``, 3 spine)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = ((j - 256) / 200.0) ** 2 + ((i - 256) / 230.0) ** 2 < 1.0
    vol = np.full(SHAPE, -1000, np.int16)
    vol[np.broadcast_to(body, SHAPE)] = 40
    organ = ((k - 200) / 120.0) ** 2 + ((j - 220) / 80.0) ** 2 + ((i - 180) / 70.0) ** 2 < 1.0
    organ2 = ((k - 180) / 90.0) ** 2 + ((j - 260) / 50.0) ** 2 + ((i - 330) / 45.0) ** 2 < 1.0
    spine = ((j - 380) / 25.0) ** 2 + ((i - 256) / 25.0) ** 2 < 1.0
    vol[organ] = 90
    if second_organ:
        vol[organ2] = 60
    vol[np.broadcast_to(spine, SHAPE)] = 700
    vol += rng.normal(0, 25, SHAPE).astype(np.int16)
    mask = np.zeros(SHAPE, np.uint8)
    mask[organ] = 1
    if second_organ:
        mask[organ2] = 2
    mask[np.broadcast_to(spine, SHAPE)] = 3
    return vol, mask
