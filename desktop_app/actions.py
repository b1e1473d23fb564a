"""The window's actions, declared once: name, text, shortcuts, menu group, checkable.

The main window builds QActions from :data:`ACTION_SPECS` into ``MainWindow.named_actions``;
the controller connects them; Help > Shortcuts lists them from the QActions themselves.
Other panels add their own actions with :func:`make_action` and register them in
``MainWindow.named_actions`` so they show up in the shortcuts dialog too.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore, QtGui


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...] = ()
    group: str = ""  # menu title ("File", "Edit", "View", "Help") or "Navigate" (view-local)
    checkable: bool = False
    checked: bool = False
    tip: str = ""
    enabled: bool = True


ACTION_SPECS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec("new_project", "&New project...", ("Ctrl+Shift+N",), "File",
               tip="Create a project: a structure to segment, its labels, dataset and models"),
    ActionSpec("delete_project", "&Delete project...", (), "File", tip="Move a project to the trash"),
    ActionSpec("open_scan", "&Open scan...", ("Ctrl+O",), "File", tip="Open a scan file (NIfTI, NRRD, MHA, PNG...)"),
    ActionSpec("open_dicom", "Open &DICOM folder...", ("Ctrl+Shift+O",), "File", tip="Open a folder holding one DICOM series"),
    ActionSpec("open_mask", "Open &mask...", ("Ctrl+L",), "File", tip="Open a label mask over the current scan"),
    ActionSpec("save_mask", "&Save mask", ("Ctrl+S",), "File", tip="Save the label mask"),
    ActionSpec("save_mask_as", "Save mask &as...", ("Ctrl+Shift+S",), "File", tip="Save the label mask to a new file"),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "File"),
    # Edit (placeholders: the editing tools connect them)
    ActionSpec("undo", "&Undo", ("Ctrl+Z",), "Edit", enabled=False),
    ActionSpec("redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Edit", enabled=False),
    # View
    ActionSpec("layout_3up", "&3-up layout", ("Ctrl+1",), "View", checkable=True, checked=True),
    ActionSpec("layout_4up", "&4-up layout with 3D view", ("Ctrl+5",), "View", checkable=True,
               tip="Axial, coronal, sagittal and a 3D surface view of the labels"),
    ActionSpec("layout_axial", "&Axial view only", ("Ctrl+2",), "View", checkable=True),
    ActionSpec("layout_coronal", "&Coronal view only", ("Ctrl+3",), "View", checkable=True),
    ActionSpec("layout_sagittal", "&Sagittal view only", ("Ctrl+4",), "View", checkable=True),
    ActionSpec("next_view", "&Next view", ("V",), "View", tip="Make the next view active (one-big-view: show it)"),
    ActionSpec("prev_view", "&Previous view", ("Shift+V",), "View"),
    ActionSpec("reset_zoom", "&Reset zoom", ("Home",), "View", tip="Fit every view to its slice"),
    ActionSpec("toggle_overlay", "Show &labels", ("O",), "View", checkable=True, checked=True),
    ActionSpec("toggle_outline", "Labels as &outline", ("Shift+O",), "View", checkable=True),
    ActionSpec("opacity_up", "Label opacity &up", (".",), "View"),
    ActionSpec("opacity_down", "Label opacity &down", (",",), "View"),
    ActionSpec("toggle_uncertainty", "Show model &uncertainty", ("U",), "View", checkable=True),
    ActionSpec("toggle_crosshair", "Show cross&hair", ("X",), "View", checkable=True, checked=True),
    ActionSpec("wl_preset_1", "W/L: CT brain (80/40)", ("1",), "View"),
    ActionSpec("wl_preset_2", "W/L: CT soft tissue (400/40)", ("2",), "View"),
    ActionSpec("wl_preset_3", "W/L: CT lung (1500/-600)", ("3",), "View"),
    ActionSpec("wl_preset_4", "W/L: CT bone (1800/400)", ("4",), "View"),
    ActionSpec("wl_auto", "W/L: Auto (0.5-99.5 %)", ("0",), "View"),
    # Navigate: active only while a view has keyboard focus
    ActionSpec("slice_next", "Next slice", ("Up",), "Navigate"),
    ActionSpec("slice_prev", "Previous slice", ("Down",), "Navigate"),
    ActionSpec("slice_next_10", "Forward 10 slices", ("PgUp",), "Navigate"),
    ActionSpec("slice_prev_10", "Back 10 slices", ("PgDown",), "Navigate"),
    # Help
    ActionSpec("shortcuts", "&Keyboard shortcuts", ("F1",), "Help"),
    ActionSpec("about", "&About SegLoop", (), "Help"),
)


def make_action(parent: QtCore.QObject, spec: ActionSpec) -> QtGui.QAction:
    """A QAction from a spec (``group`` is kept as a dynamic property for the dialog)."""
    action = QtGui.QAction(spec.text, parent)
    action.setObjectName(f"action_{spec.name}")
    if spec.shortcuts:
        action.setShortcuts([QtGui.QKeySequence(s) for s in spec.shortcuts])
    action.setCheckable(spec.checkable)
    if spec.checkable:
        action.setChecked(spec.checked)
    if spec.tip:
        action.setStatusTip(spec.tip)
        action.setToolTip(spec.tip)
    action.setEnabled(spec.enabled)
    action.setProperty("group", spec.group)
    return action
