"""The screenshot scripts' set-up and helper.

Importing it puts the project on ``sys.path`` and points ``SEGLOOP_HOME`` at a new temporary
folder (a screenshot never reads or writes the user's data); :func:`wait_until` runs Qt's
event loop until a condition holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))
os.environ["SEGLOOP_HOME"] = tempfile.mkdtemp(prefix="segloop_shots_")


def wait_until(pred: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Process events until ``pred()`` is true or ``timeout`` seconds pass; ``pred()``'s last value."""
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    t0 = time.time()
    while not pred() and time.time() - t0 < timeout:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        QtCore.QThread.msleep(5)
    return bool(pred())
