"""What a running model shows before it ends (no Qt): streamed labels and an honest estimate.

:class:`StreamDisplay` keeps a full-size labels buffer of the scan being segmented, fills
it with the engine's final partial results (:class:`unet_engine.inference.streaming.PartialLabels`,
nearest the cursor first) and shows it through a
:class:`~desktop_app.state.preview.Preview` (drawn in every slice view by a
:class:`~desktop_app.viewer.preview_layer.PreviewLayer`): :meth:`StreamDisplay.flush` (the
controller calls it at most every few tens of milliseconds) sets the preview the first
time; later the buffer changes in place and only the box of the parts that arrived since
is announced, so a view redraws only when its slice changed. It also tells when the slice in view is complete and, from
the rate of the work done so far, how long the rest will take.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np

from desktop_app.state.geometry import BBox, bbox_union, full_bbox
from desktop_app.state.preview import Preview
from unet_engine.volume import int3

TOOL = "inference"
DESCRIPTION = "AI prediction (running)"


def remaining_text(seconds: float) -> str:
    """"about 12 s left", "about 3 min left", "less than 1 s left"."""
    if seconds < 1.0:
        return "less than 1 s left"
    if seconds < 90.0:
        return f"about {int(round(seconds))} s left"
    return f"about {int(round(seconds / 60.0))} min left"


class StreamDisplay:
    """Streamed partial labels of one model run, and its time estimate."""

    def __init__(self, preview: Preview | None = None) -> None:
        self.preview = preview if preview is not None else Preview()
        self.volume: Any = None
        self.labels: np.ndarray | None = None
        self.focus: tuple[int, int, int] = (0, 0, 0)
        self.focus_axis = 0
        self._plane_left = 0  # voxels of the slice in view not labelled yet
        self._plane: np.ndarray | None = None
        self.started = self.work_started = 0.0
        self.focus_seconds: float | None = None
        self._dirty: BBox | None = None

    def start(self, volume: Any, focus: tuple[int, int, int], focus_axis: int) -> None:
        """A run on ``volume`` begins, with the cursor ``focus`` on the slice of ``focus_axis`` in view."""
        self.clear()
        self.volume, self.focus, self.focus_axis = volume, int3(focus), int(focus_axis)
        self.labels = None
        plane_shape = tuple(n for a, n in enumerate(volume.shape) if a != self.focus_axis)
        self._plane = np.zeros(plane_shape, bool)
        self._plane_left = int(np.prod(plane_shape))
        self.started = time.perf_counter()
        self.work_started = 0.0
        self.focus_seconds = None

    def clear(self) -> None:
        """Hide the streamed labels and drop the buffer."""
        self.preview.clear()
        self.labels, self._plane, self.volume, self._dirty = None, None, None, None

    # ----- partial results ------------------------------------------------------------------
    def add(self, partial: Any) -> bool:
        """Show one :class:`~unet_engine.inference.streaming.PartialLabels`; True when it completed the slice in view."""
        if self.volume is None:
            return False
        shape = tuple(self.volume.shape)
        if self.labels is None:
            self.labels = np.zeros(shape, np.uint8)
        region = tuple(partial.region)
        self.labels[region] = partial.labels
        bbox = cast(BBox, tuple((int(s.start), int(s.stop)) for s in region))
        self._dirty = bbox_union(self._dirty, bbox)
        return self._mark_plane(region)

    def flush(self) -> None:
        """Show the parts added since the last flush."""
        if self._dirty is None or self.labels is None:
            return
        dirty, self._dirty = self._dirty, None
        if self.preview.bbox is None:
            self.preview.set_result(full_bbox(self.labels.shape), self.labels, DESCRIPTION, TOOL)
        else:
            self.preview.update_region(dirty)  # the buffer changed in place: redraw only that box

    def _mark_plane(self, region: tuple[slice, ...]) -> bool:
        ax, f = self.focus_axis, self.focus[self.focus_axis]
        if self._plane is None or self.focus_seconds is not None or not region[ax].start <= f < region[ax].stop:
            return False
        sub = self._plane[tuple(r for a, r in enumerate(region) if a != ax)]
        self._plane_left -= int(sub.size - np.count_nonzero(sub))
        sub[...] = True
        if self._plane_left > 0:
            return False
        self.focus_seconds = time.perf_counter() - self.started
        return True

    # ----- estimate -----------------------------------------------------------------------
    def estimate(self, fraction: float, step: int, total: int) -> str:
        """Remaining time from the rate of the work so far ("" until there is a rate)."""
        now = time.perf_counter()
        if fraction >= 1.0:
            return "finishing"
        if total <= 0 or step <= 0:  # loading the model, preparing the image: the work starts after
            self.work_started = now
            return ""
        elapsed = now - self.work_started
        if fraction <= 0.0 or elapsed <= 0.0:
            return ""
        return remaining_text(elapsed * (1.0 - fraction) / fraction)

    def ready_text(self) -> str:
        """"slice in view ready after 1.4 s" once it is, else ""."""
        if self.focus_seconds is None:
            return ""
        return f"slice in view ready after {self.focus_seconds:.1f} s"
