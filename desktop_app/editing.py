"""Mask correction in the app: tools, undo/redo, label editing and autosave, wired together.

:class:`EditingController` owns the editing state of the open document -- the
:class:`~desktop_app.state.history.History`, the
:class:`~desktop_app.state.tools.ToolController` and the autosave
:class:`~desktop_app.state.journal.Journal` -- and connects it to the window:

* **Tools** panel (left dock) and **Label editor** panel; tool shortcuts B / E / F / N and
  ``[`` / ``]`` are window actions (listed in Help > Shortcuts, and in the Edit menu).
* Each view's left button goes to the tool (:mod:`desktop_app.viewer.interaction`) when a
  tool other than Navigate is chosen; Shift + left-drag erases; right-drag stays
  window/level.
* The window's ``undo`` / ``redo`` actions (Ctrl+Z; Ctrl+Shift+Z, Ctrl+Y) are connected
  here; their text follows the history ("Undo Brush stroke"), enabled when possible.
* Autosave: when a scan opens (``controller.scan_opened``) an autosave snapshot left by
  a crashed session (:func:`~desktop_app.state.journal.find_recoverable`) is offered
  first -- "Restore unsaved mask from <time>?" -- and restored as one undoable step, then
  the journal starts (every ``SEGLOOP_AUTOSAVE_S`` seconds, default 2). The snapshot is
  deleted after a save that leaves the document clean, when a mask file replaces the
  mask, when another scan replaces this one, and on a clean close. Closing with unsaved
  edits is confirmed by the controller's close guard (``document.dirty``); this class
  only wraps that guard to stop the journal afterwards.
* One-shot ops (Interpolate slices, Fill holes, label Delete / Merge) never block the GUI
  thread: the state layer's ``*_job`` snapshots the mask, the pure compute step runs in a
  worker (:meth:`run_patch_job`, through the controller's ``WorkerManager``: status-bar
  busy indicator), and the resulting patch is written on the GUI thread as one undo step.
  Their buttons are disabled while one runs (one op at a time). **Stale results are
  refused**: if ``document.generation`` changed meanwhile (a brush stroke, undo, a label
  rename, another scan...) nothing is written and the status bar says so ("... the mask
  changed meanwhile; nothing was applied, run it again"); recomputing silently could
  loop forever under a user who keeps painting, and applying a stale patch could undo
  their newer edits.

The app creates one with ``EditingController(window, controller, document, grid)`` (see
:func:`desktop_app.app.build_app`); :func:`editing_controller` finds it from the window.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app.main_window import MainWindow
from desktop_app.preview_tools import PreviewToolsController
from desktop_app.state.document import Document
from desktop_app.state.history import History
from desktop_app.state.label_ops import MaskPatch, StalePatchError
from desktop_app.state.journal import (
    Journal,
    RecoveryInfo,
    autosave_root,
    discard_recovery,
    find_recoverable,
    load_recovery,
    scan_key,
)
from desktop_app.state.tools import ToolController
from desktop_app.viewer.interaction import TOOL_MOUSE_HELP, ViewInteraction
from desktop_app.viewer.preview_layer import PreviewLayer
from desktop_app.viewer.view_grid import ViewGrid
from desktop_app.widgets.label_editor import LabelEditor, wait_cursor
from desktop_app.widgets.tool_panel import ToolPanel
from unet_engine.errors import SegLoopError
from unet_engine.volume import Volume

log = logging.getLogger(__name__)

AUTOSAVE_ENV = "SEGLOOP_AUTOSAVE_S"
DEFAULT_AUTOSAVE_S = 2.0
RESTORE_DESCRIPTION = "Restore unsaved mask"


def autosave_interval() -> float:
    """Seconds between autosave checks (``$SEGLOOP_AUTOSAVE_S``, default 2)."""
    try:
        return max(0.05, float(os.environ.get(AUTOSAVE_ENV, DEFAULT_AUTOSAVE_S)))
    except ValueError:
        return DEFAULT_AUTOSAVE_S


def editing_controller(window: QtWidgets.QWidget) -> "EditingController | None":
    """The :class:`EditingController` attached to ``window`` (None when there is none)."""
    return window.findChild(EditingController, "editing_controller")


class EditingController(QtCore.QObject):
    """History + tools + journal of the document, connected to the window and views."""

    def __init__(self, window: MainWindow, controller, document: Document, grid: ViewGrid,
                 autosave_s: float | None = None) -> None:
        super().__init__(window)
        self.setObjectName("editing_controller")
        self.window, self.controller, self.document, self.grid = window, controller, document, grid
        self.history = History(document)
        self.tools = ToolController(document, self.history)
        self.tools.tool = "none"
        self.journal = Journal(document, interval_s=autosave_s if autosave_s is not None else autosave_interval())
        self._journal_folder: Path | None = None
        self._shut_down = False
        self.recovered: RecoveryInfo | None = None  # the snapshot restored at the last open
        self.op_worker = None  # the running one-shot op's worker (None when idle)

        self.tool_panel = ToolPanel(self.tools.brush)
        self.label_editor = LabelEditor(document, self.tools)
        self.label_editor.runner = self.run_patch_job
        docks = [window.add_panel("Tools", self.tool_panel, "left"),
                 window.add_panel("Label editor", self.label_editor, "left")]
        window.resizeDocks(docks, [self.tool_panel.sizeHint().height(), 2000], QtCore.Qt.Orientation.Vertical)
        window.resizeDocks(docks[:1], [300], QtCore.Qt.Orientation.Horizontal)
        self.interactions = {plane: ViewInteraction(view, self.tools, self) for plane, view in grid.views.items()}
        self.preview_layers = []
        for view in grid.views.values():
            layer = PreviewLayer(view, self.tools.preview)
            view.layers.append(layer)
            self.preview_layers.append(layer)
        self.preview_tools = PreviewToolsController(
            self.tools, self.tool_panel, controller.workers,
            window.show_message, self.run_patch_job, self)
        self._build_actions()
        self._connect()
        self._update_undo_actions()

    # ----- wiring ------------------------------------------------------------------------
    def _build_actions(self) -> None:
        w = self.window
        self.undo_action = w.named_actions.get("undo") or self._new_action("undo", "Undo", ("Ctrl+Z",))
        self.redo_action = w.named_actions.get("redo") or self._new_action("redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"))
        for name, act in self.tool_panel.named_actions.items():
            if name not in w.named_actions:
                w.add_action(act, name)
        mouse_help = getattr(w, "mouse_help", None)  # Help > Shortcuts lists these too
        if isinstance(mouse_help, list):
            mouse_help.extend(row for row in TOOL_MOUSE_HELP if row not in mouse_help)
        edit = getattr(w, "menus", {}).get("Edit")
        if edit is not None:
            edit.addSeparator()
            for name in ("tool_navigate", "tool_brush", "tool_eraser", "tool_fill", "tool_smart_brush", "tool_seeds",
                         "tool_click", "tool_lasso", "preview_accept", "preview_discard", "brush_smaller",
                         "brush_larger"):
                edit.addAction(self.tool_panel.named_actions[name])

    def _new_action(self, name: str, text: str, keys: tuple[str, ...]) -> QtGui.QAction:
        act = QtGui.QAction(text, self.window)
        act.setShortcuts([QtGui.QKeySequence(k) for k in keys])
        act.setProperty("group", "Edit")
        self.window.add_action(act, name)
        return act

    def _connect(self) -> None:
        c, tp, le = self.controller, self.tool_panel, self.label_editor
        self.undo_action.triggered.connect(self.undo)
        self.redo_action.triggered.connect(self.redo)
        self.history.changed.connect(self._update_undo_actions)
        tp.tool_changed.connect(self.set_tool)
        tp.settings_changed.connect(self._update_cursors)
        tp.interpolate_requested.connect(self.interpolate)
        tp.fill_holes_requested.connect(self.fill_holes)
        le.active_label_changed.connect(lambda _v: self._update_cursors())
        le.error.connect(self._show_error)
        self.document.labels.changed.connect(self._on_labels_changed)
        c.scan_opened.connect(self._on_scan_opened)
        c.mask_saved.connect(self._on_mask_saved)
        if hasattr(c, "mask_opened"):
            c.mask_opened.connect(self._on_mask_opened)
        self._inner_guard: Callable[[], bool] | None = self.window.close_guard
        self.window.close_guard = self._close_guard
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._on_labels_changed()

    # ----- tools -------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """"navigate" (left button = crosshair) or an editing tool of the Tools panel."""
        if self.tool_panel.tool != name:
            self.tool_panel.set_tool(name)  # comes back here through tool_changed
            return
        self.tools.tool = "none" if name == "navigate" else name
        self.grid.set_left_button_mode("navigate" if name == "navigate" else "paint")
        self._update_cursors()

    def _update_cursors(self) -> None:
        for inter in self.interactions.values():
            inter.update_cursor()

    def _on_labels_changed(self) -> None:
        self.tool_panel.set_labels(self.document.labels)
        self._update_cursors()

    def _active_axis(self) -> int:
        g = self.grid.active_view.geometry_info
        return g.axis if g is not None else 0

    @property
    def op_running(self) -> bool:
        """True while a one-shot op computes in a worker."""
        return self.op_worker is not None

    def interpolate(self) -> bool:
        """Interpolate the active label between its drawn slices along the active view's
        axis, in a worker; True when started (the result is applied when it arrives)."""
        if self.document.mask is None or self.op_running:
            return False
        label = self.tools.brush.label
        try:
            job = self.tools.interpolate_job(self._active_axis())
        except (ValueError, RuntimeError, SegLoopError) as exc:
            self._show_error("Could not interpolate", exc)
            return False

        def done(bbox) -> None:
            self.window.show_message(f"Interpolated label {label}" if bbox else
                                     f"Nothing to interpolate: draw label {label} on two or more slices with a gap")
        return self.run_patch_job(job, f"Interpolating label {label}", "Could not interpolate", done)

    def fill_holes(self, mode: str = "3d") -> bool:
        """Fill the holes of the active label (3D, or per slice of the active view), in a
        worker; True when started."""
        if self.document.mask is None or self.op_running:
            return False
        label = self.tools.brush.label
        try:
            job = self.tools.fill_holes_job(mode=mode, axis=self._active_axis())
        except (ValueError, RuntimeError, SegLoopError) as exc:
            self._show_error("Could not fill holes", exc)
            return False

        def done(bbox) -> None:
            self.window.show_message(f"Filled holes in label {label}" if bbox else f"Label {label} has no holes")
        return self.run_patch_job(job, f"Filling holes in label {label}", "Could not fill holes", done)

    def run_patch_job(self, job: Callable[[], MaskPatch], description: str, error_title: str,
                      on_done: Callable[[object], None] | None = None) -> bool:
        """Run ``job`` (a state-layer ``*_job``) in a worker, then apply its patch on the GUI
        thread as one undo step and call ``on_done(bbox)``; a stale patch (the document
        changed meanwhile) is refused with a status-bar message. True when started."""
        if self.op_running:
            self.window.show_message("Another mask operation is still running", 3000)
            return False
        workers = getattr(self.controller, "workers", None)
        if workers is None:  # no worker manager (bare embedding): run here
            with wait_cursor():
                self._apply_patch(job(), description, error_title, on_done)
            return True

        def result(patch: MaskPatch) -> None:
            self._apply_patch(patch, description, error_title, on_done)

        def error(exc: BaseException) -> None:
            self._show_error(error_title, exc)

        self._set_op_busy(True)
        self.op_worker = workers.start(job, description=description, on_result=result, on_error=error,
                                       on_finished=lambda: self._set_op_busy(False))
        return True

    def _apply_patch(self, patch: MaskPatch, description: str, error_title: str,
                     on_done: Callable[[object], None] | None) -> None:
        if self._shut_down:
            return
        try:
            bbox = self.tools.apply_patch(patch)
        except StalePatchError:
            self.window.show_message(f"{description}: the mask changed meanwhile; nothing was applied, "
                                     "run it again", 8000)
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._show_error(error_title, exc)
            return
        if on_done is not None:
            on_done(bbox)

    def _set_op_busy(self, busy: bool) -> None:
        if not busy:
            self.op_worker = None
        self.tool_panel.set_busy(busy)
        self.label_editor.set_busy(busy)

    # ----- undo --------------------------------------------------------------------------
    def undo(self) -> bool:
        with wait_cursor():
            done = self.tools.undo()
        if not done:
            self.window.show_message("Nothing to undo", 2000)
        return done

    def redo(self) -> bool:
        with wait_cursor():
            done = self.tools.redo()
        if not done:
            self.window.show_message("Nothing to redo", 2000)
        return done

    def _update_undo_actions(self) -> None:
        h = self.history
        self.undo_action.setText(h.undo_text)
        self.redo_action.setText(h.redo_text)
        self.undo_action.setEnabled(h.can_undo())
        self.redo_action.setEnabled(h.can_redo())

    # ----- scans, autosave and recovery ----------------------------------------------------
    def _on_scan_opened(self, volume: Volume) -> None:
        self.tools.cancel()
        self.preview_tools.reset()
        self.journal.stop()
        new_folder = autosave_root() / scan_key(volume.source_path, volume)
        if self._journal_folder is not None:
            # the previous scan was replaced: clean, or its edits were discarded on request
            shutil.rmtree(self._journal_folder, ignore_errors=True)
        self.recovered = None
        info = find_recoverable(volume.source_path, volume=volume)
        if info is not None and self.document.image is volume:
            self.offer_recovery(info, volume)
        self._journal_folder = new_folder
        if not self._shut_down:
            self.journal.start()
        self._init_threshold(volume)

    def restore_question(self, info: RecoveryInfo) -> str:
        when = datetime.fromtimestamp(info.saved_at).strftime("%Y-%m-%d %H:%M:%S")
        return f"Restore unsaved mask from {when}?"

    def ask_restore(self, info: RecoveryInfo) -> bool:
        """Blocking question at scan open: restore the autosaved mask? (tests replace this)."""
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Question, "Unsaved mask found",
                                    self.restore_question(info), parent=self.window)
        box.setObjectName("restore_box")
        name = info.scan_path.name if info.scan_path else "this scan"
        box.setInformativeText(f"SegLoop was closed without saving the mask of {name}. "
                               "Restore it (undoable), or discard it?")
        restore = box.addButton("Restore", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Discard", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(restore)
        box.exec()
        return box.clickedButton() is restore

    def offer_recovery(self, info: RecoveryInfo, volume: Volume) -> bool:
        """Ask, then put the snapshot's mask and labels in the document as one undo step."""
        if not self.ask_restore(info):
            discard_recovery(info)
            self.window.show_message("Discarded the autosaved mask", 5000)
            return False
        try:
            mask = load_recovery(info, volume)
        except SegLoopError as exc:
            self._show_error("Could not restore the unsaved mask", exc)
            return False
        doc = self.document
        if doc.mask_path is None and info.mask_path is not None:
            doc.mask_path = info.mask_path  # Save goes back to the mask file being edited
        table = info.label_table()
        if len(table):
            doc.labels.replace_all(table.labels)
        try:
            self.history.apply_full_mask(mask, RESTORE_DESCRIPTION)
        except ValueError:  # e.g. uint16 labels over the uint8 mask of a fresh open
            doc.replace_mask(mask, dirty=True)
        self.recovered = info
        self.window.show_message(f"Restored the unsaved mask from "
                                 f"{datetime.fromtimestamp(info.saved_at):%H:%M:%S} (Ctrl+Z undoes it)", 8000)
        return True

    def _init_threshold(self, volume: Volume) -> None:
        stats = self.document.intensity_stats
        if stats is not None:
            lo, hi = float(stats.vmin), float(stats.vmax)
        else:
            lo, hi = float(volume.array.min()), float(volume.array.max())
        levels = self.grid.active_view.levels
        default = (max(lo, min(levels)), min(hi, max(levels)))
        if self.tools.brush.threshold is None:
            self.tool_panel.set_intensity_range(lo, hi, default)
        else:
            self.tool_panel.set_intensity_range(lo, hi)

    def _on_mask_saved(self, _path) -> None:
        if not self.document.dirty:  # edits made while saving are still only autosaved
            self.journal.discard()

    def _on_mask_opened(self, _path) -> None:
        self.journal.discard()  # a mask file replaced the (confirmed-discarded) edits

    def _close_guard(self) -> bool:
        self.tools.release()
        ok = self._inner_guard() if self._inner_guard is not None else True
        if ok:
            self.shutdown(discard=True)
        return ok

    def shutdown(self, discard: bool = False) -> None:
        """Stop the autosave thread; ``discard`` also deletes the snapshot (clean close)."""
        self._shut_down = True
        self.tools.release()
        self.journal.stop()
        if discard:
            self.journal.discard()
            self._journal_folder = None
        self.label_editor.detach()
        try:
            self.document.labels.changed.disconnect(self._on_labels_changed)
        except (ValueError, RuntimeError):
            pass

    # ----- helpers ---------------------------------------------------------------------
    def _show_error(self, title: str, exc: BaseException) -> None:
        show = getattr(self.controller, "show_error", None)
        if show is not None:
            show(title, exc)
        else:
            log.error("%s: %s", title, exc)
