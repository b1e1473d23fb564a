"""At 1400 x 900 (the default window) every dock's main controls are in view without
scrolling, and Help > Shortcuts shows every column whole."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from tests.gui_helpers import shown_app
from tests.train_helpers import HIPPO

CASE = HIPPO / "imagesTr" / "hippocampus_001.nii.gz"


@pytest.fixture
def window_1400x900(qtbot):
    """The app as it starts: built, then shown at 1400 x 900 (no saved layout)."""
    with shown_app(qtbot, 1400, 900) as parts:
        yield parts


def in_view(window, title: str, widget: QtWidgets.QWidget) -> tuple[bool, str]:
    """Whether ``widget`` lies wholly inside the visible part of dock ``title`` (its scroll
    area's viewport, as scrolled now), with a description for the failure message."""
    dock = window.docks[title]
    viewport = dock.widget().viewport()
    rect = QtCore.QRect(widget.mapTo(viewport, QtCore.QPoint(0, 0)), widget.size())
    ok = widget.isVisible() and dock.isVisible() and viewport.rect().contains(rect)
    return ok, f"{title}: {widget.objectName() or widget.text()} at {rect.getRect()} in {viewport.rect().getRect()}"


def raise_dock(qtbot, window, title: str) -> None:
    window.docks[title].raise_()
    qtbot.waitUntil(lambda: window.docks[title].widget().viewport().isVisible(), timeout=3000)
    QtWidgets.QApplication.processEvents()  # the raised tab's layout


def test_dock_buttons_and_status_are_visible_without_scrolling(qtbot, window_1400x900):
    parts = window_1400x900
    w = parts.window
    assert (w.width(), w.height()) == (1400, 900)
    parts.controller.open_scan(CASE)
    qtbot.waitUntil(lambda: parts.document.image is not None and not parts.controller.workers.is_busy, timeout=20_000)
    inf, tr, vp = parts.inference.panel, parts.training.panel, parts.versions.panel
    # the longest texts these lines usually carry
    inf.set_status("Predicted in 12.3 s with v0002 on NVIDIA H200 (cuda:0). Ctrl+Z undoes it.")
    tr.set_status("Cancelled: fine-tuning cancelled at step 120 of 400 (state saved)")
    checks = [
        ("AI model", inf.run_button), ("AI model", inf.status_label), ("AI model", inf.add_button),
        ("Fine-tune", tr.start_button), ("Fine-tune", tr.cancel_button), ("Fine-tune", tr.progress),
        ("Fine-tune", tr.status_label),
        ("Model versions", vp.promote_button), ("Model versions", vp.compare_label),
        ("Correction effort", parts.learning.dataset.effort_chart.summary),
    ]
    for title, widget in checks:
        raise_dock(qtbot, w, title)
        ok, where = in_view(w, title, widget)
        assert ok, where
    # the right column's panels are not squeezed into scrolling either
    for title in ("AI model", "Window / level"):
        assert not w.docks[title].widget().verticalScrollBar().isVisible(), title


def test_shortcuts_dialog_shows_every_column_whole(qtbot, window_1400x900):
    parts = window_1400x900
    parts.window.named_actions["shortcuts"].trigger()
    dlg = parts.window.findChild(QtWidgets.QDialog, "shortcuts_dialog")
    assert dlg is not None
    qtbot.waitExposed(dlg)
    table = dlg.table
    header = table.horizontalHeader()
    right_edge = header.sectionViewportPosition(2) + header.sectionSize(2)
    assert right_edge <= table.viewport().width(), (right_edge, table.viewport().width())
    for column in range(3):
        assert header.sectionSize(column) >= table.sizeHintForColumn(column), column  # nothing elided
    assert table.horizontalScrollBar().maximum() == 0  # nothing to scroll to
    rows = dlg.rows()
    assert ("File", "Open scan", "Ctrl+O") in rows
    dlg.close()
