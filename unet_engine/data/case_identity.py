"""Case identity and the validation-split rule of the retraining dataset.

:func:`content_hash` is a SHA-256 over the voxel values and the grid, after bringing the
array to a canonical orientation (axes sorted to world z, y, x, each increasing) and the
values to float64. The same scan therefore has the same hash whether it was read from a
DICOM series, a NIfTI or an NRRD file, whatever dtype it was stored with (int16 vs
float32) and whatever the array axis order on disk. Geometry is rounded to 1e-4 mm
(spacing, direction) and 1e-3 mm (origin) before hashing.

:func:`assign_split` decides once, when a case is added, whether it validates; see
:mod:`unet_engine.data.dataset` for the rule.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from unet_engine.volume import Volume


def _canonical(volume: Volume) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, np.ndarray]:
    """View of the array with axes ordered (z, y, x) and each increasing in world space."""
    arr, d = volume.array, np.asarray(volume.direction, dtype=np.float64)
    spacing, origin = np.asarray(volume.spacing, dtype=np.float64), np.asarray(volume.origin, dtype=np.float64)
    world_axis = [int(np.argmax(np.abs(d[:, a]))) for a in range(3)]
    if sorted(world_axis) != [0, 1, 2]:  # strongly oblique grid: hash as stored
        return arr, tuple(spacing), origin, d
    corner = np.zeros(3)
    sl = [slice(None)] * arr.ndim
    d = d.copy()
    for a in range(3):
        if d[world_axis[a], a] < 0:
            sl[a] = slice(None, None, -1)
            corner[a] = arr.shape[a] - 1
            d[:, a] = -d[:, a]
    origin = origin + np.asarray(volume.direction, dtype=np.float64) @ (spacing * corner)  # world of the new [0,0,0]
    arr = arr[tuple(sl)]
    perm = [world_axis.index(w) for w in (2, 1, 0)]
    arr = arr.transpose(perm + list(range(3, arr.ndim)))
    return arr, tuple(spacing[perm]), origin, d[:, perm]


def _r(values: Any, digits: int) -> list[float]:
    out = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        r = round(float(v), digits)
        out.append(0.0 if r == 0 else r)
    return out


def content_hash(volume: Volume) -> str:
    """``"sha256:<hex>"`` of the voxel values + grid, independent of file format and dtype."""
    arr, spacing, origin, direction = _canonical(volume)
    header = {"shape": list(arr.shape), "spacing": _r(spacing, 4), "origin": _r(origin, 3), "direction": _r(direction, 4)}
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for k in range(arr.shape[0]):  # slice by slice: no full float64 copy of a big scan
        h.update(np.ascontiguousarray(arr[k], dtype="<f8").tobytes())
    return "sha256:" + h.hexdigest()


def hash_says_val(digest: str, val_fraction: float) -> bool:
    """The hash part of the split rule (stable: depends on the scan alone)."""
    return int(digest.split(":")[-1][:15], 16) % 1000 < round(1000 * val_fraction)


def assign_split(digest: str, n_after: int, n_val: int, val_fraction: float) -> str:
    """Split for a new case, given the case count after adding it and the current val count."""
    if n_after <= 1 or val_fraction <= 0:
        return "train"
    lo = math.floor(val_fraction * n_after)
    if n_after >= 3:
        lo = max(lo, 1)
    hi = max(math.ceil(val_fraction * n_after), lo)
    if n_val < lo or (hash_says_val(digest, val_fraction) and n_val < hi):
        return "val"
    return "train"
