"""The screenshot scripts' one helper: run Qt's event loop until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(pred: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Process events until ``pred()`` is true or ``timeout`` seconds pass; ``pred()``'s last value."""
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    t0 = time.time()
    while not pred() and time.time() - t0 < timeout:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        QtCore.QThread.msleep(5)
    return bool(pred())
