"""Inter-process locks for the retraining dataset and the model registry.

Two SegLoop windows (or a GUI and a ``segloop train`` in a terminal) may point at the
same dataset folder. Every write takes an exclusive OS file lock (``filelock``: ``flock``
on Linux/macOS, ``msvcrt`` on Windows) on a small ``.segloop.lock`` file in the folder, so
two writers never interleave their read-modify-write of ``dataset.json``. The OS drops the
lock when a process dies (kill -9 included): a crashed instance never leaves it stuck.

Readers take no lock: every file is replaced atomically (see :mod:`unet_engine.io.atomic`),
so a reader sees the old or the new ``dataset.json``, never a half-written one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import filelock

from unet_engine.errors import SegLoopError

LOCK_NAME = ".segloop.lock"


class FolderLock:
    """An exclusive, re-entrant (per thread) lock on ``folder/.segloop.lock``.

    ``error_cls`` is raised when the lock is not free within ``timeout`` seconds, with a
    message naming the lock file so the user knows which folder is busy.
    """

    def __init__(self, folder: str | Path, *, timeout: float = 10.0, what: str = "dataset",
                 error_cls: type[SegLoopError] = SegLoopError) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.timeout = float(timeout)
        self.what = what
        self.error_cls = error_cls
        # thread_local=True (the default): two threads of one process also exclude each other.
        self._lock = filelock.FileLock(str(self.path), timeout=self.timeout)

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for the ``with`` block (raises ``error_cls`` on timeout)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=self.timeout if timeout is None else timeout)
        except filelock.Timeout:
            raise self.error_cls(
                f"{self.what} is in use by another SegLoop instance (lock file {self.path}); "
                "close the other window or wait for its job to finish, then try again",
                self.folder,
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    @property
    def is_locked(self) -> bool:
        """True while this object (in this thread) holds the lock."""
        return bool(self._lock.is_locked)
