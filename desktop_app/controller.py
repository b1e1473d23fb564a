"""Wires the window's actions to the document and views; owns worker lifetimes.

Open and save flows run their file I/O in workers (:mod:`desktop_app.workers`) with a busy
indicator; engine errors (:class:`~unet_engine.errors.SegLoopError`) become a readable
dialog (``str(error)``, never a traceback) and the app stays usable.

Hooks for other panels:

* :meth:`Controller.run_in_worker` runs any function/generator off the GUI thread with the
  busy indicator and error dialog wired up;
* :meth:`Controller.show_error` shows a SegLoopError (or any exception) readably;
* ``scan_opened(volume)``, ``mask_saved(path)``, ``model_requested(str)`` signals;
* ``scan_checks``: the open scan's modality notes, computed by the load worker
  (:mod:`desktop_app.state.scan_checks`), read by the modality guard;
* :meth:`Controller.set_default_labels`: the label table each opened scan starts with
  (the open project's labels); the names saved with an opened mask win over them for the
  values the mask file names (:mod:`desktop_app.state.saved_labels`), and saving a mask
  saves the table's names and colours with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import EmitLoopError
from PySide6 import QtCore, QtWidgets

from desktop_app import io_jobs
from desktop_app.main_window import MainWindow
from desktop_app.settings import Settings
from desktop_app.state.document import Document, label_values_present
from desktop_app.state.label_io import descriptions
from desktop_app.state.saved_labels import LabelConflict, labels_with_saved, saved_labels_note
from desktop_app.state.scan_checks import ScanChecks
from desktop_app.unsaved_mask import CLEAN, DISCARD, UnsavedMaskGuard, ask_unsaved_mask
from desktop_app.state.display import DisplayOptions
from desktop_app.viewer.readout import format_readout, voxel_index
from desktop_app.viewer.view_grid import ViewGrid
from desktop_app.widgets.overlay_panel import OverlayPanel
from desktop_app.widgets.shortcuts_dialog import ShortcutsDialog
from desktop_app.widgets.window_level import WindowLevelWidget
from desktop_app.workers import WorkerManager
from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)

SCAN_FILTER = ("Scans (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm *.png *.jpg *.jpeg *.tif *.tiff);;"
               "All files (*)")
MASK_FILTER = "Label masks (*.nii *.nii.gz *.nrrd *.seg.nrrd *.mha *.mhd *.dcm);;All files (*)"
_LAYOUT_ACTIONS = {"3-up": "layout_3up", "4-up": "layout_4up", "axial": "layout_axial", "coronal": "layout_coronal",
                   "sagittal": "layout_sagittal"}
_OPTION_ACTIONS = {"overlay_visible": "toggle_overlay", "outline": "toggle_outline",
                   "uncertainty_visible": "toggle_uncertainty", "crosshair_visible": "toggle_crosshair"}


class Controller(QtCore.QObject):
    """Application logic between the window, the document and the workers."""

    scan_opened = QtCore.Signal(object)  # Volume
    mask_opened = QtCore.Signal(object)  # Path
    mask_saved = QtCore.Signal(object)  # Path
    error_shown = QtCore.Signal(str, str)  # title, message
    model_requested = QtCore.Signal(str)  # --model from the command line

    def __init__(self, window: MainWindow, document: Document, grid: ViewGrid, window_level: WindowLevelWidget,
                 overlay_panel: OverlayPanel, options: DisplayOptions, settings: Settings,
                 scan_checks: ScanChecks | None = None) -> None:
        super().__init__(window)
        self.scan_checks = scan_checks if scan_checks is not None else ScanChecks()
        self.window, self.document, self.grid = window, document, grid
        self.window_level, self.overlay_panel, self.options = window_level, overlay_panel, options
        self.settings = settings
        self.workers = WorkerManager(self)
        self.last_error: tuple[str, str] | None = None
        self.requested_model: str | None = None
        self._default_labels: list = []  # e.g. from the model card; applied to each new scan
        self._load_token = 0
        self._dialogs: list[QtWidgets.QWidget] = []
        self._hovering = False
        # Save / Discard / Cancel before dropping unsaved edits; Save reuses save_mask
        self.unsaved = UnsavedMaskGuard(document, lambda: self.ask_discard_changes(), lambda: self.save_mask(),
                                        self.mask_saved, self.workers, window.show_message, parent=self)
        self._connect()
        self.refresh_recent_menu()
        self._update_enabled()

    # ----- wiring ------------------------------------------------------------------------
    def _connect(self) -> None:
        a, g, w = self.window.named_actions, self.grid, self.window
        a["open_scan"].triggered.connect(lambda: self.open_scan_dialog())
        a["open_dicom"].triggered.connect(lambda: self.open_dicom_dialog())
        a["open_mask"].triggered.connect(lambda: self.open_mask_dialog())
        a["save_mask"].triggered.connect(lambda: self.save_mask())
        a["save_mask_as"].triggered.connect(lambda: self.save_mask_as())
        a["quit"].triggered.connect(w.close)
        for layout, name in _LAYOUT_ACTIONS.items():
            a[name].triggered.connect(lambda _=False, layout=layout: g.set_layout(layout))
        g.layout_changed.connect(lambda layout: a[_LAYOUT_ACTIONS[layout]].setChecked(True))
        a["next_view"].triggered.connect(lambda: g.cycle_active(1))
        a["prev_view"].triggered.connect(lambda: g.cycle_active(-1))
        a["reset_zoom"].triggered.connect(g.reset_zoom)
        for option, name in _OPTION_ACTIONS.items():
            a[name].toggled.connect(lambda on, option=option: setattr(self.options, option, on))
        self.options.changed.connect(self._sync_option_actions)
        a["opacity_up"].triggered.connect(lambda: setattr(self.options, "opacity", self.options.opacity + 0.1))
        a["opacity_down"].triggered.connect(lambda: setattr(self.options, "opacity", self.options.opacity - 0.1))
        for n in range(1, 5):
            a[f"wl_preset_{n}"].triggered.connect(lambda _=False, n=n: self.window_level.apply_preset_index(n))
        a["wl_auto"].triggered.connect(lambda: self.window_level.apply_preset_index(0))
        for name, step in (("slice_next", 1), ("slice_prev", -1), ("slice_next_10", 10), ("slice_prev_10", -10)):
            a[name].triggered.connect(lambda _=False, step=step: g.step_active(step))
        a["shortcuts"].triggered.connect(self.show_shortcuts)
        a["about"].triggered.connect(self.show_about)

        self.window_level.levels_changed.connect(g.set_levels)
        g.window_level_dragged.connect(self.window_level.drag)
        g.hover_changed.connect(self._on_hover)
        self.document.cursor_changed.connect(self._on_cursor)
        self.document.labels.changed.connect(self._refresh_readout)
        self.document.dirty_changed.connect(lambda _dirty: self._update_title())
        self.workers.busy_changed.connect(lambda busy: w.set_busy(busy, (self.workers.descriptions() or [""])[-1]))
        self.workers.message_changed.connect(lambda text: w.busy_label.setText(text))
        w.files_dropped.connect(self.open_paths)
        w.close_guard = self.can_close

    def _sync_option_actions(self, name: str) -> None:
        if name in _OPTION_ACTIONS:
            action = self.window.named_actions[_OPTION_ACTIONS[name]]
            action.blockSignals(True)
            action.setChecked(bool(getattr(self.options, name)))
            action.blockSignals(False)

    def _update_enabled(self) -> None:
        has = self.document.has_image
        for name in ("open_mask", "save_mask", "save_mask_as"):
            self.window.named_actions[name].setEnabled(has)

    def _update_title(self) -> None:
        vol = self.document.image
        if vol is None:
            self.window.set_document_title(None)
            return
        name = Path(vol.source_path).name if vol.source_path else "scan"
        mask = self.document.mask_path.name if self.document.mask_path else "unsaved mask"
        star = " *" if self.document.dirty else ""
        self.window.set_document_title(f"{name} — {mask}{star}")

    # ----- generic helpers ---------------------------------------------------------------
    def run_in_worker(self, func: Callable[..., Any], *args: Any, description: str = "Working",
                      on_result: Callable[[Any], None] | None = None, error_title: str = "Error",
                      on_progress: Callable[[Any], None] | None = None, **kwargs: Any):
        """Run ``func`` off the GUI thread; errors become a dialog titled ``error_title``.

        Returns the superqt worker (``worker.quit()`` cancels a generator at its next yield).
        """
        return self.workers.start(func, *args, description=description,
                                  on_result=self._guarded(error_title, on_result) if on_result else None,
                                  on_error=lambda exc: self.show_error(error_title, exc),
                                  on_progress=on_progress, **kwargs)

    def _guarded(self, title: str, func: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap a GUI-thread result handler so a failure becomes a dialog, not a crash."""
        def call(result: Any) -> None:
            try:
                func(result)
            except Exception as exc:  # noqa: BLE001 - shown to the user, logged with traceback
                self.show_error(title, exc)
        return call

    def show_error(self, title: str, error: BaseException | str) -> None:
        """A non-blocking error dialog: ``str(error)`` for SegLoop errors, a short line for
        anything else (the traceback goes to the log, never to the user)."""
        while isinstance(error, EmitLoopError) and error.__cause__ is not None:
            error = error.__cause__  # an exception raised in a document-event callback
        if isinstance(error, SegLoopError) or isinstance(error, str):
            text = str(error)
        else:
            log.error("unexpected error", exc_info=(type(error), error, error.__traceback__))
            text = f"Unexpected error ({type(error).__name__}): {error}"
        self.last_error = (title, text)
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self.window)
        box.setObjectName("error_box")
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.window.show_message(f"{title}: {text}", 10000)
        self.error_shown.emit(title, text)

    def ask_discard_changes(self) -> str | bool:
        """Blocking question about the unsaved mask: "save", "discard" or "cancel" (tests
        replace this method; a stand-in returning True / False means Discard / Cancel)."""
        return ask_unsaved_mask(self.window)

    def _ok_to_replace(self, then: Callable[[], Any]) -> bool:
        """True: go on (nothing unsaved, or Discard). False: Cancel, or Save -- ``then()``
        runs again once the mask is saved (:mod:`desktop_app.unsaved_mask`)."""
        return self.unsaved.resolve(then) in (CLEAN, DISCARD)

    # ----- open --------------------------------------------------------------------------
    def open_scan_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open scan", self.settings.last_dir(), SCAN_FILTER)
        if path:
            self.open_scan(path)

    def open_dicom_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Open DICOM folder", self.settings.last_dir())
        if path:
            self.open_scan(path)

    def open_mask_dialog(self) -> None:
        if not self.document.has_image:
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open mask", self.settings.last_dir(), MASK_FILTER)
        if path:
            self.open_mask(path)

    def open_paths(self, paths: list, as_mask: bool = False) -> None:
        """Open dropped/argument paths: a scan (and optionally its mask), or a mask over
        the open scan when Shift is held or the file is named like one (label/mask/seg)."""
        paths = [Path(p) for p in paths]
        if not paths:
            return
        if self.document.has_image and (as_mask or (len(paths) == 1 and io_jobs.looks_like_mask(paths[0]))):
            self.open_mask(paths[0])
        else:
            self.open_scan(paths[0], mask=paths[1] if len(paths) > 1 else None)

    def open_scan(self, path: str | Path, mask: str | Path | None = None):
        """Read ``path`` (file or DICOM folder) in a worker, then show it. Returns the worker."""
        if not self._ok_to_replace(lambda: self.open_scan(path, mask)):
            return None
        self._load_token += 1
        token = self._load_token
        path = Path(path)
        self.window.show_message(f"Opening {path.name}...", 0)
        return self.workers.start(
            io_jobs.load_scan, path, mask, description=f"Opening {path.name}",
            on_result=self._guarded("Could not open the scan", lambda res: self._on_scan_loaded(res, path, token)),
            on_error=lambda exc: self._on_load_failed(exc, token))

    def _on_scan_loaded(self, res: io_jobs.LoadedScan, path: Path, token: int) -> None:
        if token != self._load_token:
            return  # a newer open superseded this one
        # label names/colours start from the defaults (project / model card), not the previous
        # scan's; the names saved with the mask win for the values they name
        entries, conflicts = labels_with_saved(self._default_labels, res.mask_labels.entries)
        self.document.labels.replace_all(entries)
        note = saved_labels_note(res.mask_labels, conflicts)
        self.scan_checks.record(res.volume, res.modality_notes)
        self.document.set_image(res.volume, res.mask, mask_path=res.mask_path, stats=res.stats)
        self.window_level.set_stats(res.stats, res.volume.modality)
        self.grid.show_plane_alone_if_flat()
        self.settings.add_recent(path)
        self.settings.set_last_dir(path.parent)
        self.refresh_recent_menu()
        self._update_enabled()
        self._update_title()
        self.window.show_message(f"Opened {path.name} ({' x '.join(map(str, res.volume.shape[::-1]))}, "
                                 f"{res.volume.orientation_code()}, {res.seconds:.1f} s)"
                                 + (f". {note}" if note else ""), 15000 if note else 8000)
        self.scan_opened.emit(res.volume)

    def _on_load_failed(self, exc: BaseException, token: int) -> None:
        if token == self._load_token:
            self.window.show_message("", 1)
            self.show_error("Could not open the scan", exc)

    def open_mask(self, path: str | Path):
        """Read a mask on the open scan's grid in a worker; it replaces the current mask."""
        vol = self.document.image
        if vol is None or not self._ok_to_replace(lambda: self.open_mask(path)):
            return None
        path = Path(path)
        return self.workers.start(
            io_jobs.load_mask, path, vol, description=f"Opening mask {path.name}",
            on_result=self._guarded("Could not open the mask", lambda res: self._on_mask_loaded(res, path, vol)),
            on_error=lambda exc: self.show_error("Could not open the mask", exc))

    def _on_mask_loaded(self, res: io_jobs.LoadedMask, path: Path, vol) -> None:
        if self.document.image is not vol:
            return
        conflicts: list[LabelConflict] = []
        if res.labels.entries:  # the file's names win; a mask without names keeps the table
            entries, conflicts = labels_with_saved(self.document.labels, res.labels.entries)
            self.document.labels.replace_all(entries)
        self.document.replace_mask(res.mask, mask_path=path, dirty=False)
        self.settings.set_last_dir(path.parent)
        self._update_title()
        note = saved_labels_note(res.labels, conflicts)
        self.window.show_message(f"Opened mask {path.name}" + (f". {note}" if note else ""), 15000 if note else 5000)
        self.mask_opened.emit(path)

    def refresh_recent_menu(self) -> None:
        menu = self.window.recent_menu
        menu.clear()
        files = self.settings.recent_files()
        for f in files:
            act = menu.addAction(Path(f).name)
            act.setToolTip(f)
            act.setStatusTip(f)
            act.triggered.connect(lambda _=False, f=f: self.open_scan(f))
        menu.setEnabled(bool(files))

    # ----- save --------------------------------------------------------------------------
    def save_mask(self, path: str | Path | None = None):
        """Save to ``path`` or the current mask file (asks for a name when there is none).
        Writes a copy of the mask in a worker; returns the worker (None if nothing to do)."""
        vol, mask = self.document.image, self.document.mask
        if vol is None or mask is None:
            return None
        target = Path(path) if path is not None else self.document.mask_path
        # plain Save never writes over a .dcm mask file (an imported SEG/RTSTRUCT): it asks for
        # a name; a .dcm chosen in Save as is written as a DICOM SEG
        asks = path is None and target is not None and target.suffix.lower() == ".dcm"
        if target is None or io_jobs.is_source_path(target, vol) or asks:
            return self.save_mask_as()
        generation = self.document.generation
        return self.workers.start(
            io_jobs.save_mask, mask.copy(), vol, target, descriptions(self.document.labels),
            description=f"Saving {target.name}",
            on_result=self._guarded("Could not save the mask", lambda saved: self._on_saved(Path(saved), vol, generation)),
            on_error=lambda exc: self.show_error("Could not save the mask", exc))

    def save_mask_as(self, path: str | Path | None = None, chosen_filter: str = ""):
        """Ask for a file name (.nii.gz / .nrrd / .seg.nrrd / DICOM SEG .dcm) and save; never the scan itself."""
        vol = self.document.image
        if vol is None:
            return None
        if path is None:
            start = io_jobs.suggested_mask_path(vol, self.document.mask_path)
            path, chosen_filter = QtWidgets.QFileDialog.getSaveFileName(
                self.window, "Save mask as", str(start), ";;".join(io_jobs.MASK_FORMATS))
            if not path:
                return None
        target = io_jobs.with_mask_suffix(path, chosen_filter)
        if io_jobs.is_source_path(target, vol):
            self.show_error("Could not save the mask", SegLoopError(
                "is the scan you are viewing (or inside its DICOM folder); save the mask under another name", target))
            return None
        return self.save_mask(target)

    def _on_saved(self, path: Path, vol, generation: int) -> None:
        if self.document.image is not vol:
            return
        if self.document.generation == generation:
            self.document.mark_saved(path)
        else:  # edited while saving: keep the dirty flag, remember the file
            self.document.mask_path = path
        self._update_title()
        self.window.show_message(f"Saved {path}", 6000)
        self.mask_saved.emit(path)

    # ----- status bar --------------------------------------------------------------------
    def _on_hover(self, kji) -> None:
        vol = self.document.image
        if kji is None or vol is None:
            self._hovering = False
            self._on_cursor(self.document.cursor)
            return
        idx = voxel_index(kji, vol.shape)
        if idx is None:
            return
        self._hovering = True
        self.window.set_position_text(format_readout(vol, self.document.mask, self.document.labels, idx))

    def _refresh_readout(self) -> None:
        if self.document.image is not None and not self._hovering:
            self._on_cursor(self.document.cursor)

    def _on_cursor(self, kji) -> None:
        vol = self.document.image
        if vol is not None and not self._hovering:
            self.window.set_position_text(format_readout(vol, self.document.mask, self.document.labels, kji))

    # ----- help / lifetime ---------------------------------------------------------------
    def show_shortcuts(self) -> ShortcutsDialog:
        dlg = ShortcutsDialog(self.window.named_actions, self.window, mouse=self.window.mouse_help)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        return dlg

    def show_about(self) -> None:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "About SegLoop",
                                    "SegLoop: view a 3D scan, correct the U-Net's segmentation and retrain "
                                    "the model locally.", QtWidgets.QMessageBox.StandardButton.Ok, self.window)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def set_default_labels(self, labels) -> None:
        """Label entries (``Label`` objects, e.g. from the model card) every newly opened
        scan starts with; the current table is updated too."""
        self._default_labels = list(labels.values() if isinstance(labels, dict) else labels)
        self.document.labels.replace_all(self._default_labels)
        if self.document.mask is not None:
            self.document.labels.ensure(label_values_present(self.document.mask))

    def discard_mask_changes(self) -> None:
        """Drop the unsaved edits (the user agreed): the mask file is read again in a worker, or
        the mask is emptied when it was never saved."""
        doc = self.document
        if doc.mask is None:
            return
        path = doc.mask_path
        doc.replace_mask(np.zeros_like(doc.mask), mask_path=None, dirty=False)
        if path is not None and Path(path).exists():
            self.open_mask(path)
        self._update_title()

    def request_model(self, model: str | None) -> None:
        """Remember the ``--model`` argument and announce it to the inference panel."""
        if model:
            self.requested_model = model
            self.model_requested.emit(model)

    def can_close(self) -> bool:
        """Window close: confirm unsaved edits, save the layout, stop workers."""
        if not self._ok_to_replace(self.window.close):
            return False
        self.settings.save_window(self.window.saveGeometry(), self.window.saveState(), self.grid.layout_name)
        self.shutdown()
        return True

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        ok = self.workers.shutdown(timeout_ms)
        self.grid.detach()
        self.overlay_panel.detach()
        return ok
