"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

An interrupted write (crash, kill -9, full disk) leaves the previous file intact and at
worst a stray ``.tmp`` file, never a half-written target. The file gets the permissions
any other program would give it (``0o666`` minus the user's umask), not the private
``0o600`` of a temp file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from unet_engine.errors import WriteFailedError, os_reason, short_path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None,
                verify: Callable[[Path], str | None] | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``target``; on clean exit it replaces ``target``.

    ``suffix`` defaults to the target's full suffix (e.g. ``.nii.gz``) so writers that
    pick a format from the extension keep working. Before the rename the temp file must
    exist and be non-empty, and ``verify(tmp)`` (when given) must return ``None`` (else
    the reason it is broken): writers such as ITK's print an error on a full disk and
    leave a short file without raising. A failed or unverified write, or an
    :class:`OSError` on the way, raises :class:`WriteFailedError` naming the folder and
    its free space; the temp file is removed and the previous ``target`` is untouched.
    """
    target = Path(target)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name[:80]}.", suffix=".tmp" + suffix[-40:],
                                        dir=target.parent)
    except OSError as exc:
        raise write_failed(target, os_reason(exc)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            os.chmod(tmp, 0o666 & ~current_umask())
            yield tmp
            problem = check_written(tmp, verify)
            if problem is not None:
                raise write_failed(target, problem)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except WriteFailedError:
            raise
        except OSError as exc:
            raise write_failed(target, os_reason(exc)) from None
        fsync_path(target.parent)
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def check_written(path: Path, verify: Callable[[Path], str | None] | None = None) -> str | None:
    """``None`` when ``path`` holds a complete write, else why not (missing, empty, bad)."""
    try:
        if not path.is_file():
            return "the writer produced no file"
        if path.stat().st_size == 0:
            return "the writer produced an empty file (0 bytes)"
    except OSError as exc:
        return os_reason(exc)
    if verify is None:
        return None
    try:
        return verify(path)
    except Exception as exc:  # noqa: BLE001 - any failure to re-read means the file is broken
        return f"the written file cannot be read back ({os_reason(exc)})"


def write_failed(target: Path, reason: str) -> WriteFailedError:
    """The error for a save of ``target`` that did not complete, naming folder and free space."""
    folder = target.parent
    return WriteFailedError(f"could not save ({reason}); the folder {short_path(folder)} has "
                            f"{free_space_text(folder)} free. Nothing was written; any previous file of "
                            f"this name is unchanged", target)


def free_space_text(folder: Path) -> str:
    """Free space of the disk holding ``folder`` as text ("1.2 GB"), or "unknown" space."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return "an unknown amount of space"
    size = float(free)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{free} bytes"


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON to ``target`` atomically."""
    atomic_write_bytes(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def fsync_path(path: Path) -> None:
    """Flush a file or folder entry to disk (best effort: some filesystems refuse it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process's umask (read from /proc on Linux; elsewhere set and restored at once)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
