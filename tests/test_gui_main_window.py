"""Main window composition: menus, actions, shortcuts dialog, panels, command line."""

from __future__ import annotations

import sys

from PySide6 import QtCore, QtGui, QtWidgets

from conftest import DATA

REQUIRED = {
    "File": ["Open scan", "Open DICOM folder", "Open recent", "Open mask", "Save mask", "Save mask as", "Quit"],
    "View": ["3-up layout", "Axial view only", "Coronal view only", "Sagittal view only", "Reset zoom",
             "Show labels", "Show model uncertainty", "Show crosshair", "W/L: CT brain (80/40)"],
    "Help": ["Keyboard shortcuts", "About SegLoop"],
}


def menu_texts(menu: QtWidgets.QMenu) -> list[str]:
    return [a.text().replace("&", "").rstrip(".") for a in menu.actions() if not a.isSeparator()]


def test_menus_actions_and_placeholders(segloop_app):
    w = segloop_app.window
    for title, entries in REQUIRED.items():
        texts = menu_texts(w.menus[title])
        for entry in entries:
            assert entry in texts, (title, entry, texts)
    a = w.named_actions
    assert a["save_mask"].shortcut().toString() == "Ctrl+S"
    assert [s.toString() for s in a["undo"].shortcuts()] == ["Ctrl+Z"]
    assert [s.toString() for s in a["redo"].shortcuts()][0] == "Ctrl+Shift+Z"
    assert not a["undo"].isEnabled() and not a["save_mask"].isEnabled()  # nothing open yet
    assert a["slice_next"].shortcutContext() == QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut
    # every shortcut is unique
    keys = [s.toString() for act in a.values() for s in act.shortcuts()]
    assert len(keys) == len(set(keys))


def test_shortcuts_dialog_is_generated_from_the_actions(segloop_app):
    w, c = segloop_app.window, segloop_app.controller
    w.named_actions["toggle_overlay"].setShortcut(QtGui.QKeySequence("Ctrl+Alt+O"))
    dlg = c.show_shortcuts()
    rows = dlg.rows()
    texts = {(r[1], r[2]) for r in rows}
    for act in w.named_actions.values():
        for seq in act.shortcuts():
            name = act.text().replace("&", "").rstrip(".").strip()
            assert any(t == name and seq.toString(QtGui.QKeySequence.SequenceFormat.NativeText) in k
                       for t, k in texts), name
    assert ("Show labels", "Ctrl+Alt+O") in texts
    assert any(r[0] == "Mouse" and "Zoom" in r[1] for r in rows)
    dlg.close()


def test_add_panel_docks_a_widget_and_lists_it(segloop_app):
    w = segloop_app.window
    panel = QtWidgets.QLabel("Inference goes here")
    dock = w.add_panel("Inference", panel, "right", tabify_with="Labels")
    assert w.docks["Inference"] is dock and w.panels["Inference"] is panel and dock.isAncestorOf(panel)
    panels = next(a.menu() for a in w.menus["View"].actions() if a.menu() is not None and a.text() == "&Panels")
    assert "Inference" in [a.text() for a in panels.actions()]  # View > Panels lists it
    act = QtGui.QAction("Run model", w)
    act.setShortcut("Ctrl+R")
    act.setProperty("group", "Inference")
    w.add_action(act, name="run_model")
    assert w.named_actions["run_model"] is act
    # however many panels are docked, the window still fits a 1366x768 laptop screen
    assert w.minimumSizeHint().height() <= 768 and w.minimumSizeHint().width() <= 1366


def test_command_line_opens_scan_and_mask(qapp, monkeypatch):
    """``segloop SCAN --mask MASK`` through the real launcher and run_gui event loop."""
    from desktop_app import launcher
    from desktop_app.main_window import MainWindow

    scan = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz"
    mask = DATA / "io" / "ct_spleen_nifti" / "label.nii.gz"
    seen: dict = {}

    def poll() -> None:
        wins = [x for x in QtWidgets.QApplication.topLevelWidgets() if isinstance(x, MainWindow) and x.isVisible()]
        if wins and wins[0].view_grid.document.image is not None and wins[0].view_grid.document.mask.any():
            seen["title"] = wins[0].windowTitle()
            seen["shape"] = wins[0].view_grid.views["axial"].image_item.image.shape
            wins[0].close()
        elif timer.remainingTime() >= 0:
            QtCore.QTimer.singleShot(20, poll)

    def give_up() -> None:
        for x in QtWidgets.QApplication.topLevelWidgets():
            x.close()

    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(give_up)
    timer.start(20_000)
    QtCore.QTimer.singleShot(50, poll)
    monkeypatch.setattr(sys, "argv", ["segloop"])
    code = launcher.main([str(scan), "--mask", str(mask), "--model", "default"])
    timer.stop()
    assert code == 0
    assert "image.nii.gz" in seen["title"] and "label.nii.gz" in seen["title"]
    assert seen["shape"] == (132, 148)
