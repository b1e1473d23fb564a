"""Autosave and crash recovery of the open mask (plain ``threading``, no Qt).

Every ``interval_s`` seconds a background thread checks ``document.generation``; when the
mask or labels changed since the last write and the document is dirty, it writes a full
snapshot to ``segloop_home()/autosave/<key>/``:

* ``mask-<ns>.zlib``: the mask's C-order bytes, zlib level 1 (a 512x512x400 uint8 mask
  of a few structures is a few hundred KiB);
* ``state.json``: scan path, mask path, shape, dtype, geometry, label table, time, and
  the mask file's name, size and CRC-32.

Both are written atomically, the mask first and ``state.json`` last, so a crash at any
moment leaves the previous consistent pair; older mask files are removed afterwards.

The GUI thread is never blocked: the thread compresses straight from the live array
(``zlib`` releases the GIL), no copy is made on the GUI thread. If edits land during the
compression the snapshot may mix the states before and after a dab; the generation will
have moved on, so the next tick writes again.

At start-up: ``find_recoverable(scan_path)`` or ``list_recoverable()`` (for a dialog),
then ``load_recovery(info, volume)`` which checks the geometry against the scan. Call
``journal.discard()`` after a real save or a clean close. Offer recovery *before*
editing a scan: the first autosave of a new session overwrites the previous snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from desktop_app.state.document import Document
from desktop_app.state.labels import Label, LabelTable
from unet_engine.io.atomic import atomic_write_bytes, atomic_write_json
from unet_engine.errors import GeometryMismatchError, SegLoopError
from unet_engine.paths import segloop_home
from unet_engine.volume import Volume, float3, geometry_differences, int3

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_FILE = "state.json"


class RecoveryError(SegLoopError):
    """An autosave snapshot is missing, truncated or corrupt."""


def autosave_root(home: Path | None = None) -> Path:
    return Path(home or segloop_home()) / "autosave"


def scan_key(scan_path: str | Path | None, volume: Volume | None = None) -> str:
    """Folder name for a scan: readable stem + hash of its absolute path (or, for a scan
    never read from disk, of its geometry)."""
    if scan_path is not None:
        p = str(Path(scan_path).expanduser().resolve())
        stem = Path(p).name
        for suf in (".gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm"):
            stem = stem.removesuffix(suf)
        digest = hashlib.sha1(p.encode("utf-8")).hexdigest()[:16]
    else:
        stem = "untitled"
        geo = repr((volume.shape, volume.spacing, volume.origin, volume.direction.round(6).tolist())) if volume else ""
        digest = hashlib.sha1(geo.encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:40] or "scan"
    return f"{stem}-{digest}"


@dataclass
class RecoveryInfo:
    """One autosave snapshot found on disk."""

    folder: Path
    scan_path: Path | None
    mask_path: Path | None
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: list[list[float]]
    saved_at: float
    mask_file: str
    mask_bytes: int
    crc32: int
    labels: list[dict] = field(default_factory=list)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.saved_at)

    def label_table(self) -> LabelTable:
        table = LabelTable()
        table.replace_all([Label(**{**d, "colour": tuple(d["colour"])}) for d in self.labels])
        return table

    def geometry_differences(self, volume: Volume) -> list[str]:
        """How ``volume`` differs from the grid the snapshot was taken on (empty = same)."""
        ghost = Volume(np.broadcast_to(np.uint8(0), self.shape), self.spacing, self.origin, np.asarray(self.direction))
        return geometry_differences(volume, ghost)


class Journal:
    """Background autosave of ``document``; ``start()`` / ``stop()`` around a session."""

    def __init__(self, document: Document, interval_s: float = 2.0, home: Path | None = None) -> None:
        self.document = document
        self.interval_s = float(interval_s)
        self.home = Path(home) if home is not None else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_generation = -1  # nothing written yet: a dirty document is written
        self.writes = 0
        self.checks = 0  # times the thread looked at the document (written or not): a progress marker
        self.last_write_s: float | None = None  # duration of the last write
        self.last_folder: Path | None = None
        self.last_error: str | None = None

    # ----- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="segloop-autosave", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = False) -> None:
        """Stop the thread (and write pending changes first when ``flush``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if flush:
            self.flush()

    @property
    def up_to_date(self) -> bool:
        """True when the snapshot on disk holds the document's current state (or there
        is nothing to keep: a clean document), e.g. for an "autosaved" status hint."""
        return self._saved_generation == self.document.generation or not self.document.dirty

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self) -> bool:
        """Write now (in the calling thread) if anything changed; True when written."""
        return self._write_if_needed()

    def discard(self) -> None:
        """Delete the current scan's snapshot (after a real save or a clean close)."""
        with self._lock:
            folder = self._folder()
            self._saved_generation = self.document.generation
            if folder is not None and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)

    # ----- internals ---------------------------------------------------------------------
    def _run(self) -> None:
        _lower_thread_priority()
        while not self._stop.wait(self.interval_s):
            try:
                self._write_if_needed()
            except Exception as exc:  # never let the autosave thread die silently
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("autosave failed")
            self.checks += 1

    def _folder(self) -> Path | None:
        image = self.document.image
        if image is None:
            return None
        return autosave_root(self.home) / scan_key(image.source_path, image)

    def _write_if_needed(self) -> bool:
        with self._lock:
            doc = self.document
            gen = doc.generation
            if gen == self._saved_generation or not doc.dirty:
                return False
            image, mask = doc.image, doc.mask
            if image is None or mask is None or tuple(mask.shape) != image.shape:
                return False
            try:
                labels = [asdict(lab) for lab in list(doc.labels.labels.values())]
            except RuntimeError:  # the GUI thread resized the table under us: next tick
                return False
            t0 = time.perf_counter()
            buf = mask if mask.flags.c_contiguous else np.ascontiguousarray(mask)
            payload = zlib.compress(buf.data.cast("B"), 1)  # buf.data: memoryview(buf)
            if doc.mask is not mask or doc.image is not image:
                return False  # a new scan/mask arrived meanwhile
            folder = autosave_root(self.home) / scan_key(image.source_path, image)
            mask_file = f"mask-{time.time_ns()}.zlib"
            atomic_write_bytes(folder / mask_file, payload)
            state = {
                "format": FORMAT_VERSION,
                "scan_path": str(image.source_path) if image.source_path else None,
                "mask_path": str(doc.mask_path) if doc.mask_path else None,
                "shape": list(mask.shape),
                "dtype": str(mask.dtype),
                "spacing": list(image.spacing),
                "origin": list(image.origin),
                "direction": np.asarray(image.direction).tolist(),
                "saved_at": time.time(),
                "generation": gen,
                "mask_file": mask_file,
                "mask_bytes": int(mask.nbytes),
                "crc32": zlib.crc32(payload),
                "labels": labels,
            }
            atomic_write_json(folder / STATE_FILE, state)
            for old in folder.glob("mask-*.zlib"):
                if old.name != mask_file:
                    old.unlink(missing_ok=True)
            self._saved_generation = gen
            self.writes += 1
            self.last_write_s = time.perf_counter() - t0
            self.last_folder = folder
            self.last_error = None
            return True


def _lower_thread_priority(nice: int = 10) -> None:
    """On Linux, renice the calling thread so snapshots yield the CPU to the GUI thread."""
    if hasattr(os, "setpriority") and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


# ----- recovery ------------------------------------------------------------------------------
def _read_info(folder: Path) -> RecoveryInfo | None:
    try:
        s = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        if s.get("format") != FORMAT_VERSION:
            return None
        return RecoveryInfo(
            folder=folder,
            scan_path=Path(s["scan_path"]) if s.get("scan_path") else None,
            mask_path=Path(s["mask_path"]) if s.get("mask_path") else None,
            shape=int3(s["shape"]),
            dtype=str(s["dtype"]),
            spacing=float3(s["spacing"]),
            origin=float3(s["origin"]),
            direction=[[float(v) for v in row] for row in s["direction"]],
            saved_at=float(s["saved_at"]),
            mask_file=str(s["mask_file"]),
            mask_bytes=int(s["mask_bytes"]),
            crc32=int(s["crc32"]),
            labels=list(s.get("labels", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_recoverable(
    scan_path: str | Path | None, home: Path | None = None, volume: Volume | None = None
) -> RecoveryInfo | None:
    """The snapshot left for ``scan_path`` (pass ``volume`` for a scan without a path)."""
    folder = autosave_root(home) / scan_key(scan_path, volume)
    info = _read_info(folder)
    if info is None or not (folder / info.mask_file).exists():
        return None
    return info


def list_recoverable(home: Path | None = None) -> list[RecoveryInfo]:
    """Every readable snapshot, newest first (for a start-up "Recover?" dialog)."""
    root = autosave_root(home)
    if not root.is_dir():
        return []
    out = [info for f in root.iterdir() if f.is_dir() and (info := _read_info(f)) is not None]
    return sorted(out, key=lambda i: i.saved_at, reverse=True)


def load_recovery(info: RecoveryInfo, volume: Volume | None = None) -> np.ndarray:
    """The recovered mask; raises GeometryMismatchError when ``volume``'s grid differs,
    RecoveryError when the snapshot is damaged."""
    if volume is not None:
        diffs = info.geometry_differences(volume)
        if diffs:
            raise GeometryMismatchError("the autosaved mask does not fit this scan: " + "; ".join(diffs), info.folder)
    path = info.folder / info.mask_file
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise RecoveryError(f"cannot read the autosaved mask ({exc.strerror})", path) from None
    if zlib.crc32(payload) != info.crc32:
        raise RecoveryError("the autosaved mask is damaged (checksum mismatch)", path)
    try:
        raw = zlib.decompress(payload)
    except zlib.error:
        raise RecoveryError("the autosaved mask is damaged (cannot decompress)", path) from None
    dtype = np.dtype(info.dtype)
    if len(raw) != info.mask_bytes or len(raw) != int(np.prod(info.shape)) * dtype.itemsize:
        raise RecoveryError("the autosaved mask has the wrong size", path)
    return np.frombuffer(raw, dtype=dtype).reshape(info.shape).copy()


def discard_recovery(info: RecoveryInfo) -> None:
    shutil.rmtree(info.folder, ignore_errors=True)


def prune_recoverable(max_age_s: float = 30 * 86400, home: Path | None = None) -> int:
    """Delete snapshots older than ``max_age_s``; returns how many."""
    n = 0
    for info in list_recoverable(home):
        if info.age_s > max_age_s:
            discard_recovery(info)
            n += 1
    return n
