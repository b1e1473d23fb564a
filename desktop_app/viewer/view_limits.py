"""How far a slice view may pan and zoom out (no Qt).

A view locks its aspect ratio (one display millimetre is as long across as down), so
the range needed to show the *whole* slice depends on the widget's shape as well as on
the slice's: a thin coronal slab (400 x 40 mm) in a square view needs a 400 mm tall
range. Pan limits derived from the slice alone (e.g. one slice height around it) would
cap that range at a fraction of the slice's width -- the view could never show it
all. :func:`pan_limits` sizes the limits from the fitted range instead, so zooming out
always reaches the whole slice while the slice cannot be panned out of sight.
"""

from __future__ import annotations


def fitted_range(extent_mm: tuple[float, float], viewport_px: tuple[float, float]) -> tuple[float, float]:
    """``(x, y)`` range in mm that shows the whole ``(width, height)`` slice in a viewport
    of ``(width, height)`` pixels at a locked 1:1 physical aspect."""
    w, h = (max(float(v), 1e-6) for v in extent_mm)
    pw, ph = (max(float(v), 1.0) for v in viewport_px)
    ratio = pw / ph  # mm across per mm down of the visible range
    return max(w, h * ratio), max(h, w / ratio)


def pan_limits(extent_mm: tuple[float, float], viewport_px: tuple[float, float]) -> dict[str, float]:
    """``ViewBox.setLimits`` keywords for a slice of ``extent_mm`` (image rect ``(0, 0, w, h)``)
    shown in ``viewport_px``: a margin of one fitted range on every side, so the largest
    allowed range (slice + two margins) always exceeds the fitted one (plus padding)."""
    w, h = (float(v) for v in extent_mm)
    fx, fy = fitted_range(extent_mm, viewport_px)
    return {"xMin": -fx, "xMax": w + fx, "yMin": -fy, "yMax": h + fy}
