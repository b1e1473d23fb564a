"""The editing API a Qt adapter drives: :class:`ToolController` (no Qt).

A mouse adapter maps a view's mouse position to continuous voxel coordinates
``(row, col)`` of that view (voxel ``v`` spans ``[v - 0.5, v + 0.5)``; integers are voxel
centres) and calls::

    ctl = ToolController(document, history)
    ctl.tool = "brush"   # "brush" | "eraser" | "fill" | "smart_brush" | "seeds" | "click" | "lasso" | "none"
    ctl.brush.size = 5; ctl.brush.unit = "mm"; ctl.brush.label = 2
    ctl.press(axis, slice_index, row, col)                  # left button down
    ctl.press(axis, slice_index, row, col, erase=True)      # right button: erase stroke
    ctl.move(axis, slice_index, row, col)                   # while the button is held
    ctl.release()                                           # button up: one undo entry
    ctl.cancel()                                            # Esc mid-stroke: restore

Every call that changes voxels announces the changed bbox via
``document.mask_changed(bbox)`` (views redraw only that) and returns it. One-shot ops
(interpolate, fill holes, delete/merge label) are methods too, each one undo step.
The brush settings' ``label``/``paint_over``/``threshold`` also drive the fill tool.

Interactive tools (:mod:`desktop_app.state.preview`): with ``"seeds"`` a stroke records
seeds of the active label (an erase stroke: background seeds) in ``ctl.preview`` and,
when it ends, emits ``requested("grow", None)``; with ``"click"`` a press emits
``requested("click", ClickRequest)``. The app computes the result in a worker, shows it
with ``preview.set_result`` / ``merge_result``, and ``accept_job()`` / ``discard()``
end it. ``"lasso"`` collects an outline on one slice and writes its inside on release
(one undo entry); ``"smart_brush"`` paints only brush voxels similar to, and connected
to, the voxel under the brush centre.

For a GUI that must not block, each one-shot op also comes split in two: a ``*_job``
method snapshots the mask (GUI thread, a memcpy) and returns a zero-argument function to
run in a worker thread, which returns a :class:`~desktop_app.state.label_ops.MaskPatch`;
:meth:`ToolController.apply_patch` then writes it on the GUI thread as one undo step
(raising :class:`~desktop_app.state.label_ops.StalePatchError` when the document changed
since the snapshot)::

    job = ctl.interpolate_job(axis)          # GUI thread
    patch = job()                            # worker thread
    bbox = ctl.apply_patch(patch)            # GUI thread
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psygnal import Signal

from desktop_app.state.brush import BrushSettings, BrushStroke
from desktop_app.state.document import Document

from desktop_app.state.fill import fill_holes, fill_holes_job, flood_fill
from desktop_app.state.geometry import BBox, view_to_kji
from desktop_app.state.history import History
from desktop_app.state.interpolation import interpolate_job, interpolate_slices
from desktop_app.state.lasso_stroke import LassoStroke
from desktop_app.state.preview import Preview, accept_job
from desktop_app.state.seed_stroke import SeedStroke
from desktop_app.state.label_ops import (
    MaskPatch,
    apply_patch,
    delete_label,
    delete_label_job,
    merge_labels,
    merge_labels_job,
)
from unet_engine.volume import int3

__all__ = ["TOOLS", "BrushSettings", "ClickRequest", "ToolController"]

TOOLS = ("brush", "eraser", "fill", "smart_brush", "seeds", "click", "lasso", "none")
#: Tools whose results wait in the preview for Accept / Discard.
PREVIEW_TOOLS = ("seeds", "click")


@dataclass(frozen=True)
class ClickRequest:
    """A click of the click-to-segment tool: where, on which view, with which label."""

    axis: int
    kji: tuple[int, int, int]
    label: int
    erase: bool = False


class ToolController:
    """Turns press/move/release on a view into undoable mask edits."""

    requested = Signal(str, object)  # ("grow", None) | ("click", ClickRequest)

    def __init__(self, document: Document, history: History, brush: BrushSettings | None = None) -> None:
        self.document = document
        self.history = history
        self.brush = brush or BrushSettings()
        self.preview = Preview()
        self.smart_tolerance = 0.5
        self._tool = "brush"
        self._stroke: BrushStroke | SeedStroke | LassoStroke | None = None

    # ----- settings ----------------------------------------------------------------------
    @property
    def tool(self) -> str:
        return self._tool

    @tool.setter
    def tool(self, name: str) -> None:
        if name not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {name!r}")
        self.release()
        if name != self._tool and self.preview.tool and self.preview.tool != name:
            self.preview.clear()  # another tool's proposal is not accepted silently
        self._tool = name

    @property
    def stroke_active(self) -> bool:
        return self._stroke is not None and self._stroke.active

    @property
    def lasso_points(self) -> list[tuple[float, float]]:
        """Vertices of the outline being drawn (for the view's rubber band)."""
        return list(self._stroke.points) if isinstance(self._stroke, LassoStroke) else []

    # ----- mouse -------------------------------------------------------------------------
    def press(self, axis: int, slice_index: int, row: float, col: float, *, erase: bool = False) -> BBox | None:
        """Button down at a point of view ``axis``: starts a stroke (brush/eraser) or
        fills (fill tool). ``erase=True`` makes a brush stroke an eraser stroke."""
        self.release()
        if not self.document.has_image or self._tool == "none":
            return None
        if self._tool == "fill":
            return self.fill_at(axis, slice_index, row, col, erase=erase)
        if self._tool == "click":
            kji = int3(round(v) for v in view_to_kji(axis, slice_index, row, col))
            self.requested.emit("click", ClickRequest(int(axis), kji, self.brush.label, erase))
            return None
        if self._tool == "seeds":
            self._stroke = SeedStroke(self.document, self.preview, self.brush, background=erase)
            self._stroke.dab(axis, slice_index, row, col)
            return None
        if self._tool == "lasso":
            self._stroke = LassoStroke(self.document, self.history, self.brush, axis, slice_index, erase=erase)
            self._stroke.add(axis, slice_index, row, col)
            return None
        self._stroke = BrushStroke(self.document, self.history, self.brush, erase=erase or self._tool == "eraser",
                                   smart_tolerance=self.smart_tolerance if self._tool == "smart_brush" else None)
        return self._stroke.dab(axis, slice_index, row, col)

    def move(self, axis: int, slice_index: int, row: float, col: float) -> BBox | None:
        """Mouse moved with the button held: paints the segment from the last point."""
        if self._stroke is None:
            return None
        if not self._stroke.active:  # e.g. undo was pressed mid-stroke
            self._stroke = None
            return None
        if isinstance(self._stroke, LassoStroke):
            self._stroke.add(axis, slice_index, row, col)
            return None
        if isinstance(self._stroke, SeedStroke):
            self._stroke.dab(axis, slice_index, row, col)
            return None
        return self._stroke.dab(axis, slice_index, row, col)

    def release(self) -> bool:
        """Button up: the stroke becomes one undo entry (True when anything changed); a
        seed stroke asks for a new grow; a lasso writes its inside (may raise
        :class:`~desktop_app.state.lasso.LassoError`)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None:
            return False
        if isinstance(stroke, SeedStroke):
            if stroke.finish():
                self.requested.emit("grow", None)
            return False
        if isinstance(stroke, LassoStroke):
            return stroke.finish() is not None
        return stroke.finish()

    def cancel(self) -> None:
        """Abandon the current stroke and restore what it painted."""
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            stroke.cancel()

    # ----- preview (grow from seeds, click to segment) -----------------------------------
    def accept_job(self) -> Callable[[], MaskPatch]:
        """Job computing the patch that accepts the preview (see :func:`accept_job`)."""
        self.release()
        return accept_job(self.document, self.preview, self.brush)

    def discard(self) -> bool:
        """Drop the preview (seeds and result); True when there was one."""
        self.cancel()
        active = self.preview.active
        self.preview.clear()
        return active

    # ----- one-shot ops ------------------------------------------------------------------
    def fill_at(self, axis: int, slice_index: int, row: float, col: float, *, erase: bool = False) -> BBox | None:
        """2D flood fill (4-connected) from a seed with the active label (0 if ``erase``)."""
        b = self.brush
        return flood_fill(
            self.document, self.history, axis, int(slice_index), int(round(row)), int(round(col)),
            0 if erase else b.label, paint_over=b.paint_over, paint_over_label=b.paint_over_label,
            threshold=b.threshold,
        )

    def interpolate(self, axis: int, value: int | None = None, *, paint_over: str = "empty") -> BBox | None:
        """Fill the gaps between drawn slices of ``value`` (default: active label)."""
        self.release()
        value = self.brush.label if value is None else value
        return interpolate_slices(self.document, self.history, value, axis, paint_over=paint_over)

    def fill_holes(
        self, value: int | None = None, *, mode: str = "3d", axis: int = 0, paint_over: str = "empty"
    ) -> BBox | None:
        """Fill the holes of ``value`` (default: active label) in 3D or per slice of ``axis``."""
        self.release()
        value = self.brush.label if value is None else value
        return fill_holes(self.document, self.history, value, mode=mode, axis=axis, paint_over=paint_over)

    def delete_label(self, value: int) -> BBox | None:
        self.release()
        return delete_label(self.document, self.history, value)

    def merge_labels(self, source: int, target: int) -> BBox | None:
        self.release()
        return merge_labels(self.document, self.history, source, target)

    # ----- the same, split for a worker thread -------------------------------------------------
    def interpolate_job(self, axis: int, value: int | None = None, *,
                        paint_over: str = "empty") -> Callable[[], MaskPatch]:
        self.release()
        value = self.brush.label if value is None else value
        return interpolate_job(self.document, value, axis, paint_over=paint_over)

    def fill_holes_job(self, value: int | None = None, *, mode: str = "3d", axis: int = 0,
                       paint_over: str = "empty") -> Callable[[], MaskPatch]:
        self.release()
        value = self.brush.label if value is None else value
        return fill_holes_job(self.document, value, mode=mode, axis=axis, paint_over=paint_over)

    def delete_label_job(self, value: int) -> Callable[[], MaskPatch]:
        self.release()
        return delete_label_job(self.document, value)

    def merge_labels_job(self, source: int, target: int) -> Callable[[], MaskPatch] | None:
        self.release()
        return merge_labels_job(self.document, source, target)

    def apply_patch(self, patch: MaskPatch) -> BBox | None:
        """Apply a job's result: one undo entry, one ``mask_changed``."""
        self.release()
        return apply_patch(self.document, self.history, patch)

    def undo(self) -> bool:
        self.release()
        return self.history.undo()

    def redo(self) -> bool:
        self.release()
        return self.history.redo()
