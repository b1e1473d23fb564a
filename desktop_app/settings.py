"""Persistent GUI settings (QSettings, INI file in the SegLoop data folder).

``$SEGLOOP_HOME/gui.ini`` (tests point ``SEGLOOP_HOME`` at a temp folder, so they never
touch the user's settings): recent scans, last folder, the last open project, window
geometry and dock layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore

from unet_engine.paths import segloop_home

MAX_RECENT = 10


class Settings:
    """Typed accessors over a :class:`QSettings` INI file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else segloop_home() / "gui.ini"
        self._qs = QtCore.QSettings(str(self.path), QtCore.QSettings.Format.IniFormat)

    # ----- recent files --------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value: Any = self._qs.value("recent/files", [])  # a list, or one str when one file is stored
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent(self, path: str | Path) -> list[str]:
        p = str(Path(path).resolve())
        files = [f for f in self.recent_files() if f != p]
        files.insert(0, p)
        files = files[:MAX_RECENT]
        self._qs.setValue("recent/files", files)
        self._qs.sync()
        return files

    def clear_recent(self) -> None:
        self._qs.setValue("recent/files", [])

    # ----- folders -------------------------------------------------------------------------
    def last_dir(self) -> str:
        return str(self._qs.value("paths/last_dir", str(Path.home())))

    def set_last_dir(self, folder: str | Path) -> None:
        self._qs.setValue("paths/last_dir", str(folder))

    # ----- project -------------------------------------------------------------------------
    def last_project(self) -> str | None:
        value = self._qs.value("projects/last")
        return str(value) if value else None

    def set_last_project(self, name: str | None) -> None:
        self._qs.setValue("projects/last", name or "")
        self._qs.sync()

    # ----- window layout -------------------------------------------------------------------
    def save_window(self, geometry: QtCore.QByteArray, state: QtCore.QByteArray, layout: str) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)
        self._qs.setValue("window/layout", layout)
        self._qs.sync()

    def window_geometry(self) -> QtCore.QByteArray | None:
        return self._bytes("window/geometry")

    def window_state(self) -> QtCore.QByteArray | None:
        return self._bytes("window/state")

    def view_layout(self) -> str:
        return str(self._qs.value("window/layout", "3-up"))

    def _bytes(self, key: str) -> QtCore.QByteArray | None:
        value = self._qs.value(key)
        return value if isinstance(value, QtCore.QByteArray) and not value.isEmpty() else None

    def sync(self) -> None:
        self._qs.sync()
