"""Grow from seeds and click to segment in the app: worker jobs, preview, accept / discard.

:class:`PreviewToolsController` listens to the tool controller's ``requested`` signal:

* after each **seed stroke** (tool "seeds") the seeds so far are grown in a worker by a
  :class:`~desktop_app.state.grow_seeds.SeedGrower` kept per scan and intensity limits
  (it caches its feature image, so the next stroke recomputes little). One grow runs at a
  time: strokes made meanwhile are grown together when it ends, and a result computed
  from older seeds is dropped (the preview's ``generation``).
* each **click** (tool "click") grows a region from the clicked voxel in a worker
  (:func:`~desktop_app.state.region_click.region_from_click`, 2D or 3D as the brush's
  mode, the panel's tolerance) and adds it to the preview; Shift + click removes one.
  Moving the tolerance slider recomputes the last click.

**Accept** (Enter) computes the patch in a worker (only the preview's box is copied) and
writes it as one undo step through the editing controller's ``run_patch_job``;
**Discard** (Esc) clears seeds and proposal and cancels a running grow; the mask and the
history are untouched. Errors the user can fix (seeds of one label only, a click on air)
are shown in the Tools panel and the status bar, not as dialogs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from PySide6 import QtCore

from desktop_app.state.grow_seeds import GrowResult, SeedError, SeedGrower, check_seed_labels
from desktop_app.state.intensity import single_channel
from desktop_app.state.preview import BACKGROUND_SEED
from desktop_app.state.region_click import ClickError, region_from_click
from desktop_app.state.tools import ClickRequest, ToolController

log = logging.getLogger(__name__)


class PreviewToolsController(QtCore.QObject):
    """Runs the preview tools' jobs and keeps the Tools panel's preview state current."""

    def __init__(self, tools: ToolController, panel, workers, show_message: Callable[[str, int], None],
                 run_patch_job: Callable[..., bool], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.tools, self.panel, self.workers = tools, panel, workers
        self.show_message, self.run_patch_job = show_message, run_patch_job
        self.preview = tools.preview
        self._grower: SeedGrower | None = None
        self._grower_key: tuple | None = None
        self._grow_worker = None
        self._grow_pending = False
        self._grow_cancel = threading.Event()
        self._click_worker = None
        self._last_click: tuple[ClickRequest, tuple | None] | None = None  # request, preview before it
        self.last_update_s: float | None = None  # seconds of the last grow / click (shown, for tests)
        self.hint = ""
        tools.requested.connect(self._on_request)
        self.preview.changed.connect(lambda _bbox: self._update_panel())
        panel.accept_requested.connect(self.accept)
        panel.discard_requested.connect(self.discard)
        panel.tolerance_changed.connect(self._on_tolerance)

    # ----- requests ----------------------------------------------------------------------
    def _on_request(self, kind: str, payload: object) -> None:
        if kind == "grow":
            self.request_grow()
        elif kind == "click" and isinstance(payload, ClickRequest):
            self.request_click(payload)

    @property
    def busy(self) -> bool:
        return self._grow_worker is not None or self._click_worker is not None

    # ----- grow from seeds ---------------------------------------------------------------
    def request_grow(self) -> bool:
        """Grow the current seeds in a worker (or once the running grow ends)."""
        if self.tools.document.image is None or not self.preview.strokes:
            return False
        if self._grow_worker is not None:
            self._grow_pending = True
            return True
        try:  # one label only: say what to paint next, without a worker round trip
            check_seed_labels(self.preview.seed_labels())
        except SeedError as exc:
            self.hint = str(exc)
            self._update_panel()
            return False
        image, limits = self.tools.document.image, self.tools.brush.threshold
        key = (id(image), limits)  # one grower (and its cached feature image) per scan and limits
        cached = self._grower if self._grower_key == key else None
        seeds, generation = self.preview.seeds(), self.preview.generation
        self._grow_cancel = cancel = threading.Event()
        started = time.perf_counter()

        def job() -> tuple[SeedGrower, GrowResult]:
            grower = cached or SeedGrower(image.array, image.spacing, intensity_range=limits)
            return grower, grower.grow(seeds, cancel=cancel.is_set)

        def done(out: tuple[SeedGrower, GrowResult]) -> None:
            grower, result = out
            self._grower, self._grower_key = grower, key
            if cancel.is_set():
                return
            self.last_update_s = time.perf_counter() - started
            if not self.preview.set_result(result.bbox, result.labels, "Grow from seeds", "seeds",
                                           generation=generation):
                self._grow_pending = True  # seeds changed meanwhile: grow them again
            else:
                self.hint = ""
                self._update_panel()

        def failed(exc: BaseException) -> None:
            if cancel.is_set():
                return
            if isinstance(exc, SeedError):
                self.hint = str(exc)
                self.show_message(str(exc), 8000)
                self._update_panel()
            else:
                log.error("grow from seeds failed: %s", exc)
                self.show_message(f"Grow from seeds failed: {exc}", 8000)

        self.hint = "Growing..."
        self._update_panel()
        self._grow_worker = self.workers.start(job, description="Growing from seeds", on_result=done,
                                               on_error=failed, on_finished=self._grow_finished)
        return True

    def _grow_finished(self) -> None:
        self._grow_worker = None
        pending, self._grow_pending = self._grow_pending, False
        if pending and not self._grow_cancel.is_set():
            self.request_grow()

    # ----- click to segment --------------------------------------------------------------
    def request_click(self, request: ClickRequest, *, replace_last: bool = False) -> bool:
        """Grow a region from a click in a worker and add it to the preview."""
        image = self.tools.document.image
        if image is None:
            return False
        if self._click_worker is not None:
            self.show_message("Still segmenting the last click", 2000)
            return False
        brush = self.tools.brush
        before = self._snapshot() if not replace_last else (self._last_click[1] if self._last_click else None)
        self._last_click = (request, before)
        tolerance, mode, limits = self.panel.tolerance, brush.mode, brush.threshold
        array, spacing = image.array, image.spacing
        started = time.perf_counter()

        def job():
            return region_from_click(single_channel(array), request.kji, spacing, tolerance=tolerance, mode=mode,
                                     axis=request.axis, intensity_range=limits)

        def done(result) -> None:
            bbox, sel = result
            self.last_update_s = time.perf_counter() - started
            if replace_last:
                self._restore(before)
            value = 0 if request.erase else request.label
            self.preview.merge_result(bbox, sel, value, "Click to segment", "click")
            self.hint = f"{int(sel.sum()):,} voxels from the last click"
            self._update_panel()

        def failed(exc: BaseException) -> None:
            msg = str(exc) if isinstance(exc, (ClickError, ValueError)) else f"Click to segment failed: {exc}"
            self.hint = msg
            self.show_message(msg, 8000)
            self._update_panel()

        self._click_worker = self.workers.start(job, description="Segmenting from the click", on_result=done,
                                                on_error=failed, on_finished=self._click_finished)
        return True

    def _click_finished(self) -> None:
        self._click_worker = None

    def _on_tolerance(self, value: float) -> None:
        self.tools.smart_tolerance = float(value)
        if self._last_click is not None and self.preview.tool == "click" and self._click_worker is None:
            self.request_click(self._last_click[0], replace_last=True)

    def _snapshot(self) -> tuple | None:
        p = self.preview
        if p.tool != "click" or p.bbox is None or p.labels is None:
            return None
        return p.bbox, p.labels.copy()

    def _restore(self, state: tuple | None) -> None:
        if state is None:
            self.preview.set_result(None, None, "Click to segment", "click")
        else:
            self.preview.set_result(state[0], state[1].copy(), "Click to segment", "click")

    # ----- accept / discard --------------------------------------------------------------
    def accept(self) -> bool:
        """Write the preview as one undo step (in a worker); True when started."""
        if not self.preview.has_result:
            self.show_message("Nothing to accept yet", 3000)
            return False
        if self._grow_worker is not None:
            self.show_message("Still growing: accept when the preview is up to date", 3000)
            return False
        try:
            job = self.tools.accept_job()
        except (ValueError, RuntimeError) as exc:
            self.show_message(str(exc), 8000)
            return False
        description = self.preview.description or "Accept preview"

        def applied(bbox) -> None:
            self.tools.discard()
            self._last_click = None
            self.hint = ""
            self.show_message(f"{description}: accepted (Ctrl+Z undoes it)" if bbox else
                              f"{description}: nothing to change (paint-over rule or intensity limits)", 5000)
            self._update_panel()

        return self.run_patch_job(job, description, f"Could not apply {description.lower()}", applied)

    def reset(self) -> None:
        """A new scan: drop the preview and the grower's caches of the old one."""
        self.discard()
        self._grower, self._grower_key = None, None
        self.last_update_s = None

    def discard(self) -> bool:
        """Drop seeds and proposal, cancelling a running grow; True when there was one."""
        self._grow_cancel.set()
        self._grow_pending = False
        self._last_click = None
        self.hint = ""
        dropped = self.tools.discard()
        if dropped:
            self.show_message("Preview discarded", 3000)
        self._update_panel()
        return dropped

    # ----- panel -------------------------------------------------------------------------
    def status_text(self) -> str:
        p = self.preview
        parts = []
        if p.strokes:
            n_bg = sum(1 for s in p.strokes if s.label == BACKGROUND_SEED)
            parts.append(f"{len(p.strokes)} seed strokes ({n_bg} background)")
        if p.has_result and self.last_update_s is not None:
            parts.append(f"preview in {self.last_update_s:.2f} s")
        if self.hint:
            parts.append(self.hint)
        return "; ".join(parts)

    def _update_panel(self) -> None:
        self.panel.set_preview_state(self.preview.active, self.status_text())
