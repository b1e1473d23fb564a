"""Smart brush: the part of a 2D brush footprint similar to the voxel under its centre (no Qt).

ITK-SNAP's adaptive-brush idea. :func:`smart_footprint` keeps the footprint voxels that

* have an intensity within ``tolerance * spread`` of the centre's reference value, where
  the reference is the median of the 3 x 3 voxels around the centre (robust to noise) and
  ``spread`` is the robust intensity range of the footprint (98th minus 2nd percentile
  of the values under it); so ``tolerance`` is a fraction, 0..1: 0 keeps only voxels equal
  to the reference, ~0.3-0.5 stops at an edge crossing the brush (the two sides differ by
  about the spread), 1 keeps nearly all the footprint (still subject to the limits);
* lie inside ``intensity_range`` (the app's intensity limits), when given;
* are 4-connected to the centre voxel through such voxels (``scipy.ndimage.label``).

An empty selection is returned when the centre itself fails (outside the limits or the
footprint).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_FOUR = ndimage.generate_binary_structure(2, 1)


def smart_footprint(
    values: np.ndarray,
    footprint: np.ndarray,
    centre: tuple[int, int],
    tolerance: float,
    *,
    intensity_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Subset (bool, ``footprint``'s shape) of ``footprint`` similar to and connected to ``centre``.

    ``values`` are the slice's intensities under the footprint's box (same shape);
    ``centre`` is the ``(row, col)`` of the brush centre in that box."""
    values = np.asarray(values, dtype=np.float64)
    footprint = np.asarray(footprint, dtype=bool)
    if values.shape != footprint.shape or values.ndim != 2:
        raise ValueError(f"values {values.shape} and footprint {footprint.shape} must be the same 2D shape")
    if not 0.0 <= float(tolerance) <= 1.0:
        raise ValueError(f"tolerance must be between 0 and 1, got {tolerance}")
    r, c = int(centre[0]), int(centre[1])
    empty = np.zeros_like(footprint)
    if not (0 <= r < values.shape[0] and 0 <= c < values.shape[1]) or not footprint[r, c]:
        return empty
    ok = footprint.copy()
    if intensity_range is not None:
        lo, hi = intensity_range
        ok &= (values >= lo) & (values <= hi)
        if not ok[r, c]:
            return empty
    ref = float(np.median(values[max(0, r - 1):r + 2, max(0, c - 1):c + 2]))
    lo_p, hi_p = np.percentile(values[footprint], [2.0, 98.0])
    ok &= np.abs(values - ref) <= float(tolerance) * float(hi_p - lo_p) + 1e-9
    ok[r, c] = True
    labelled, _ = ndimage.label(ok, structure=_FOUR)
    return labelled == labelled[r, c]
