"""Brush and eraser: footprints, paint-over rules, threshold paint, strokes (no Qt).

Footprint rules (what exactly gets painted):

* ``unit="voxel"``: the brush is ``n = round(size)`` voxels wide along each of its axes
  (both in-plane axes, plus the slice axis in 3D mode), whatever the spacing. For odd
  ``n`` it is centred on the voxel under the point; for even ``n`` on the voxel corner
  nearest the point (an integer point -> the corner at +0.5, so the brush covers
  ``c - n/2 + 1 .. c + n/2``), exactly as ITK-SNAP does.
* ``unit="mm"``: ``size`` is a diameter in millimetres; the radius along array axis ``a``
  is ``size / 2 / spacing[a]`` voxels, so a round brush is round in mm (an ellipse in
  voxels on an anisotropic plane). Centred on the voxel under the point; that voxel is
  always painted even when the brush is smaller than a voxel.
* A voxel is in a round brush when its centre lies in the ellipse/ellipsoid
  ``sum(((v_a - c_a) / r_a)**2) <= 1``, in a square brush when ``|v_a - c_a| <= r_a``
  for every axis (both inclusive, 1e-9 tolerance).
* ``mode="2d"``: only the view's current slice; ``mode="3d"``: a sphere/cube spanning
  neighbouring slices (radius along the slice axis from the same rule).
* A stroke sweeps the brush along the segment between successive points (exact swept
  ellipse / box), so fast mouse moves leave no gaps.

Which voxels inside the footprint change (``paint_over``):

* ``"all"``: every voxel; ``"empty"``: only voxels that are 0; ``"label"``: only voxels
  equal to ``paint_over_label``.
* The eraser writes 0: with ``"all"`` it clears every label, with ``"label"`` only
  ``paint_over_label``, and with ``"empty"`` (which would erase nothing) only the active
  ``label`` -- i.e. it never touches other structures.
* ``threshold=(lo, hi)``: additionally only voxels whose image intensity is in
  ``[lo, hi]`` (ITK-SNAP's adaptive brush; mean over channels for RGB images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_of, bbox_union, clip_bbox, plane_axes, to_slices, view_to_kji
from desktop_app.state.history import History, Transaction
from desktop_app.state.intensity import single_channel
from desktop_app.state.smart_brush import smart_footprint
from unet_engine.volume import float3

SHAPES = ("round", "square")
UNITS = ("voxel", "mm")
MODES = ("2d", "3d")
PAINT_OVER = ("all", "empty", "label")
_EPS = 1e-9


@dataclass
class BrushSettings:
    """What the tool panel edits. Also used by fill (label, paint_over, threshold)."""

    shape: str = "round"  # "round" | "square"
    size: float = 5.0  # diameter, in ``unit``
    unit: str = "voxel"  # "voxel" | "mm"
    mode: str = "2d"  # "2d" (current slice) | "3d" (sphere / cube)
    label: int = 1  # active label (value painted by the brush)
    paint_over: str = "all"  # "all" | "empty" | "label"
    paint_over_label: int = 0  # the label that "label" paints over / erases
    threshold: tuple[float, float] | None = None  # (lo, hi) intensity window, inclusive

    def validate(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"brush shape must be one of {SHAPES}, got {self.shape!r}")
        if self.unit not in UNITS:
            raise ValueError(f"brush unit must be one of {UNITS}, got {self.unit!r}")
        if self.mode not in MODES:
            raise ValueError(f"brush mode must be one of {MODES}, got {self.mode!r}")
        if self.paint_over not in PAINT_OVER:
            raise ValueError(f"paint_over must be one of {PAINT_OVER}, got {self.paint_over!r}")
        if not self.size > 0:
            raise ValueError(f"brush size must be positive, got {self.size}")
        if self.threshold is not None and self.threshold[0] > self.threshold[1]:
            raise ValueError(f"threshold low {self.threshold[0]} is above high {self.threshold[1]}")

    def radii(self, axis: int, spacing: tuple[float, float, float]) -> np.ndarray:
        """Brush radius in voxels along (k, j, i) for a stroke on view ``axis``."""
        if self.unit == "voxel":
            r = np.full(3, max(1, round(self.size)) / 2.0)
        else:
            r = np.array([self.size / 2.0 / s for s in spacing], dtype=np.float64)
        if self.mode == "2d":
            r[axis] = 0.5
        return np.maximum(r, 1e-6)

    def center(self, axis: int, kji: tuple[float, float, float]) -> np.ndarray:
        """Brush centre (continuous voxel coordinates) for a point under the mouse."""
        p = np.asarray(kji, dtype=np.float64)
        c = np.floor(p + 0.5)
        if self.unit == "voxel" and max(1, round(self.size)) % 2 == 0:
            shift = np.floor(p) + 0.5
            if self.mode == "2d":
                shift[axis] = c[axis]
            c = shift
        return c

    def footprint_2d(self, axis: int, spacing: tuple[float, float, float]) -> np.ndarray:
        """Boolean (rows, cols) image of one dab on view ``axis`` (for a cursor preview);
        the voxel under the point is at ``((rows - 1) // 2, (cols - 1) // 2)`` (for even
        voxel sizes the extra row/col is on the + side)."""
        ra, ca = plane_axes(axis)
        flat = replace(self, mode="2d")
        r = flat.radii(axis, spacing)
        half = [int(math.ceil(r[ra])) + 1, int(math.ceil(r[ca])) + 1]
        shape = (half[0] * 2 + 1, half[1] * 2 + 1, 1)
        c = np.zeros(3)
        c[ra], c[ca] = half
        c = flat.center(axis, float3(c))
        pts = np.array([c[ra], c[ca], 0.0])
        rr = np.array([r[ra], r[ca], 0.5])
        fp = swept_footprint(pts, pts, rr, self.shape, ((0, shape[0]), (0, shape[1]), (0, 1)))
        out = fp[:, :, 0]
        rows = np.flatnonzero(out.any(1))
        cols = np.flatnonzero(out.any(0))
        return out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def segment_bbox(p0: np.ndarray, p1: np.ndarray, r: np.ndarray, shape: tuple[int, ...]) -> BBox | None:
    """Voxel bbox holding the brush swept from ``p0`` to ``p1`` (clipped to ``shape``)."""
    lo = np.floor(np.minimum(p0, p1) - r - _EPS).astype(int)
    hi = np.ceil(np.maximum(p0, p1) + r + _EPS).astype(int) + 1
    return clip_bbox(cast(BBox, tuple((int(a), int(b)) for a, b in zip(lo, hi))), shape)


def swept_footprint(p0: np.ndarray, p1: np.ndarray, r: np.ndarray, shape: str, bbox: BBox) -> np.ndarray:
    """Boolean array over ``bbox``: voxels whose centre is in the brush swept p0 -> p1."""
    axes = [np.arange(a, b, dtype=np.float64) for a, b in bbox]
    grids = [
        axes[0].reshape(-1, 1, 1),
        axes[1].reshape(1, -1, 1),
        axes[2].reshape(1, 1, -1),
    ]
    d = (p1 - p0) / r
    if shape == "round":
        q = [(g - p0[a]) / r[a] for a, g in enumerate(grids)]
        dd = float(d @ d)
        if dd == 0.0:
            dist2 = q[0] ** 2 + q[1] ** 2 + q[2] ** 2
        else:
            t = np.clip((q[0] * d[0] + q[1] * d[1] + q[2] * d[2]) / dd, 0.0, 1.0)
            dist2 = (q[0] - t * d[0]) ** 2 + (q[1] - t * d[1]) ** 2 + (q[2] - t * d[2]) ** 2
        return dist2 <= 1.0 + _EPS
    # square: the box slides along the segment; v is in when some t in [0, 1] puts it
    # within r of p0 + t (p1 - p0) on every axis.
    delta = p1 - p0
    ok = np.ones(tuple(b - a for a, b in bbox), dtype=bool)
    t_lo: np.ndarray | float = 0.0
    t_hi: np.ndarray | float = 1.0
    for a, g in enumerate(grids):
        off = g - p0[a]
        if abs(delta[a]) < 1e-12:
            ok &= np.abs(off) <= r[a] + _EPS
        else:
            ta = (off - r[a] - _EPS) / delta[a]
            tb = (off + r[a] + _EPS) / delta[a]
            t_lo = np.maximum(t_lo, np.minimum(ta, tb))
            t_hi = np.minimum(t_hi, np.maximum(ta, tb))
    return ok & (t_lo <= t_hi)


def writable(region: np.ndarray, paint_over: str, paint_over_label: int, erase: bool, label: int) -> np.ndarray | None:
    """Which voxels of ``region`` the paint-over rule lets change (None = all)."""
    if paint_over == "all":
        return None
    if paint_over == "label":
        return region == paint_over_label
    # "empty": for the eraser, protect other labels by erasing only the active one
    return region == (label if erase else 0)


def intensity_ok(document: Document, bbox: BBox, threshold: tuple[float, float]) -> np.ndarray:
    """Voxels of ``bbox`` whose image intensity lies in ``threshold`` (inclusive)."""
    assert document.image is not None
    img = single_channel(document.image.array[to_slices(bbox)])
    return (img >= threshold[0]) & (img <= threshold[1])


def apply_selection(
    document: Document,
    txn: Transaction,
    bbox: BBox,
    sel: np.ndarray,
    value: int,
    *,
    notify: bool = True,
) -> BBox | None:
    """Write ``value`` into the voxels of ``bbox`` selected by ``sel`` (bool, bbox-shaped),
    skipping those already equal; records the before-state in ``txn`` and returns the
    bbox of what changed (None when nothing did)."""
    mask = document.mask
    assert mask is not None
    region = mask[to_slices(bbox)]
    sel = sel & (region != value)
    changed = bbox_of(sel, (bbox[0][0], bbox[1][0], bbox[2][0]))
    if changed is None:
        return None
    txn.touch(changed)
    region[sel] = value
    txn.changed(changed)
    if notify:
        document.notify_mask_changed(changed)
    return changed


class BrushPath:
    """The voxels a stroke's brush sweeps: each point joined to the previous point of the
    stroke on the same slice (the exact swept footprint, so fast moves leave no gaps)."""

    def __init__(self, settings: BrushSettings, spacing: tuple[float, float, float], shape: tuple[int, ...]) -> None:
        self.settings, self.spacing, self.shape = settings, spacing, shape
        self._last: np.ndarray | None = None
        self._last_view: tuple[int, int] | None = None

    def sweep(self, axis: int, slice_index: int, row: float, col: float
              ) -> tuple[BBox, np.ndarray, np.ndarray] | None:
        """``(bbox, footprint, centre)`` of the brush swept from the previous point to this
        one (``footprint`` is bool, ``bbox``-shaped), or None when it misses the volume."""
        s = self.settings
        r = s.radii(axis, self.spacing)
        c = s.center(axis, view_to_kji(axis, slice_index, row, col))
        view = (int(axis), int(slice_index))
        p0 = self._last if (self._last is not None and self._last_view == view) else c
        self._last, self._last_view = c, view
        bbox = segment_bbox(p0, c, r, self.shape)
        if bbox is None:
            return None
        return bbox, swept_footprint(p0, c, r, s.shape, bbox), c


class BrushStroke:
    """One press-move-release of the brush or eraser: one undo entry."""

    def __init__(self, document: Document, history: History, settings: BrushSettings, erase: bool = False,
                 smart_tolerance: float | None = None) -> None:
        if document.mask is None or document.image is None:
            raise RuntimeError("no scan is open")
        settings.validate()
        if not erase and not 0 < settings.label <= document.max_label_value:
            raise ValueError(f"label {settings.label} does not fit the mask (1..{document.max_label_value})")
        self.document = document
        self.history = history
        self.settings = replace(settings)  # settings are frozen for the stroke
        self.erase = erase
        self.smart_tolerance = smart_tolerance  # smart brush: only voxels like the centre's
        kind = "Eraser" if erase else ("Smart brush" if smart_tolerance is not None else "Brush")
        self.txn = history.begin(f"{kind} stroke")
        self.path = BrushPath(self.settings, document.image.spacing, document.mask.shape)
        self.bbox: BBox | None = None

    @property
    def active(self) -> bool:
        return self.txn.open

    def dab(self, axis: int, slice_index: int, row: float, col: float) -> BBox | None:
        """Paint at a point, joined to the previous point of the stroke on the same slice.

        Returns the bbox of the voxels that changed (already announced via
        ``document.notify_mask_changed``), or None."""
        if not self.txn.open:
            return None
        swept = self.path.sweep(axis, slice_index, row, col)
        if swept is None:
            return None
        bbox, sel, c = swept
        s, mask = self.settings, self.document.mask
        assert mask is not None
        rule = writable(mask[to_slices(bbox)], s.paint_over, s.paint_over_label, self.erase, s.label)
        if rule is not None:
            sel &= rule
        if s.threshold is not None:
            sel &= intensity_ok(self.document, bbox, s.threshold)
        if self.smart_tolerance is not None:
            sel &= self._similar_to_centre(bbox, sel, c, axis, self.smart_tolerance)
        changed = apply_selection(self.document, self.txn, bbox, sel, 0 if self.erase else s.label)
        if changed is not None:
            self.bbox = bbox_union(self.bbox, changed)
        return changed

    def _similar_to_centre(self, bbox: BBox, sel: np.ndarray, centre: np.ndarray, axis: int,
                           tolerance: float) -> np.ndarray:
        """Smart brush: per slice of the dab, the footprint voxels similar to the voxel
        under the brush centre and connected to it
        (:func:`~desktop_app.state.smart_brush.smart_footprint`)."""
        image = self.document.image
        assert image is not None
        img = single_channel(image.array[to_slices(bbox)])
        local = [int(min(max(math.floor(centre[a] + 0.5) - bbox[a][0], 0), bbox[a][1] - bbox[a][0] - 1))
                 for a in range(3)]
        ra, ca = plane_axes(axis)
        rc = (local[ra], local[ca])
        out = np.zeros_like(sel)
        for k in range(sel.shape[axis]):
            index: list[slice | int] = [slice(None)] * 3
            index[axis] = k
            fp = sel[tuple(index)]
            if fp.any():
                out[tuple(index)] = smart_footprint(np.asarray(img[tuple(index)], dtype=np.float64), fp,
                                                    rc, tolerance, intensity_range=self.settings.threshold)
        return out

    def finish(self) -> bool:
        """End the stroke; True when it became an undo entry."""
        return self.txn.commit()

    def cancel(self) -> None:
        """Abandon the stroke, restoring the voxels it painted."""
        self.txn.rollback()
