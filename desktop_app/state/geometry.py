"""Views, slices and bounding boxes in voxel coordinates (no Qt).

A *view* is named by its fixed array axis: ``0`` (k fixed, axial for typical data),
``1`` (j fixed, coronal), ``2`` (i fixed, sagittal). A point on a view is
``(axis, slice_index, row, col)`` where ``row``/``col`` index the two remaining array
axes in increasing axis order (``axis=1`` -> ``row=k``, ``col=i``).

A bounding box (:data:`BBox`) is ``((k0, k1), (j0, j1), (i0, i1))``, end exclusive, the
same convention as ``Document.mask_changed``.
"""

from __future__ import annotations

from typing import cast

import numpy as np

BBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
# The helpers below build boxes with tuple(... for axis in 3 axes); cast() gives them the
# fixed length mypy cannot infer from a generator.

_PLANE_AXES: dict[int, tuple[int, int]] = {0: (1, 2), 1: (0, 2), 2: (0, 1)}


def plane_axes(axis: int) -> tuple[int, int]:
    """The (row, col) array axes of the view whose fixed axis is ``axis``."""
    try:
        return _PLANE_AXES[int(axis)]
    except KeyError:
        raise ValueError(f"view axis must be 0, 1 or 2, got {axis!r}") from None


def view_to_kji(axis: int, slice_index: float, row: float, col: float) -> tuple[float, float, float]:
    """(k, j, i) of a point given on a view."""
    ra, ca = plane_axes(axis)
    out = [0.0, 0.0, 0.0]
    out[axis], out[ra], out[ca] = slice_index, row, col
    return out[0], out[1], out[2]


def slice_bbox(shape: tuple[int, ...], axis: int, slice_index: int) -> BBox:
    """The bbox of one whole slice of a volume of ``shape``."""
    b = [(0, int(n)) for n in shape[:3]]
    b[axis] = (int(slice_index), int(slice_index) + 1)
    return cast(BBox, tuple(b))


def full_bbox(shape: tuple[int, ...]) -> BBox:
    return cast(BBox, tuple((0, int(n)) for n in shape[:3]))


def to_slices(bbox: BBox) -> tuple[slice, slice, slice]:
    return cast("tuple[slice, slice, slice]", tuple(slice(a, b) for a, b in bbox))


def bbox_shape(bbox: BBox) -> tuple[int, int, int]:
    return cast("tuple[int, int, int]", tuple(max(0, b - a) for a, b in bbox))


def bbox_empty(bbox: BBox | None) -> bool:
    return bbox is None or any(b <= a for a, b in bbox)


def bbox_union(a: BBox | None, b: BBox | None) -> BBox | None:
    """Smallest bbox holding both (``None`` is the empty box here)."""
    if bbox_empty(a):
        return None if bbox_empty(b) else b
    if bbox_empty(b):
        return a
    if a is None or b is None:  # for mypy: bbox_empty() said neither is None
        return None
    return cast(BBox, tuple((min(x0, y0), max(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b)))


def bbox_intersection(a: BBox, b: BBox) -> BBox | None:
    out = cast(BBox, tuple((max(x0, y0), min(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b)))
    return None if bbox_empty(out) else out


def bbox_offset(inner: BBox, outer: BBox) -> BBox:
    """``inner`` expressed in the coordinates of the array cropped to ``outer``."""
    return cast(BBox, tuple((a0 - o0, a1 - o0) for (a0, a1), (o0, _) in zip(inner, outer)))


def clip_bbox(bbox: BBox, shape: tuple[int, ...]) -> BBox | None:
    out = cast(BBox, tuple((max(0, int(a)), min(int(n), int(b))) for (a, b), n in zip(bbox, shape[:3])))
    return None if bbox_empty(out) else out


def bbox_of(mask: np.ndarray, origin: tuple[int, int, int] = (0, 0, 0)) -> BBox | None:
    """Bbox of the True voxels of a 3D boolean array (shifted by ``origin``), or None."""
    if mask.size == 0:
        return None
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        out.append((int(hit[0]) + origin[ax], int(hit[-1]) + 1 + origin[ax]))
    return cast(BBox, tuple(out))
