"""A plain-text progress bar for the CLI, fed by the engine's progress generators."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Draws ``label [#####.....] 42% 3.1s`` on a terminal, or one line per 10% elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self._last_decile = -1
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, fraction: float, message: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = time.perf_counter() - self.start
        filled = int(round(fraction * self.width))
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% {elapsed:6.1f}s {message}"
        if self._tty:
            self.stream.write("\r" + line[:120].ljust(120))
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def end_line(self) -> None:
        """End a terminal's progress line, so that an error message starts on its own line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def close(self, message: str = "done") -> None:
        """The last line, with ``message``: always written (also after a 100 % line elsewhere)."""
        self._last_decile = -1
        self.update(1.0, message)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
