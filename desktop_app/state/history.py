"""Undo/redo of mask edits as bounding-box deltas, one entry per stroke/operation (no Qt).

How an edit is recorded (napari's staged paint atoms, ITK-SNAP's bbox deltas):

1. ``txn = history.begin("Brush stroke")`` opens a :class:`Transaction`.
2. Before a tool writes into ``document.mask`` it calls ``txn.touch(bbox)``: the first
   time a region is touched its old contents are copied, per chunk of
   :data:`CHUNK_SHAPE` voxels (a brush dab copies a few 32 KiB chunks at most, whatever
   the volume size; later dabs over the same chunks copy nothing).
3. After writing it calls ``txn.changed(bbox)`` (the union is the entry's bbox) and
   ``document.notify_mask_changed(bbox)`` so views redraw live.
4. ``history.commit()`` turns the captured chunks into one entry holding the *old*
   contents of the changed bbox, compressed.

An entry stores only the side of the delta that is *not* in the mask: the old contents
while it can be undone; undo swaps them with the current contents (which become the redo
side). This halves memory against storing both. Payloads are raw (tiny), run-length
encoded (big smooth regions: a whole-mask AI prediction) or zlib level 1.
``bytes_used`` counts the compressed payloads plus a fixed per-entry overhead; past
``max_bytes`` the oldest entries are dropped. ``apply_full_mask(new, "AI prediction")`` records a whole-mask replacement
(cropped to the bbox of the voxels that differ).

Undo/redo write the mask and call ``document.notify_mask_changed(bbox)``. Mask-editing
ops may also record label-table entries (``txn.track_labels``) so that undoing "Delete
label" brings back the label's name and colour with its voxels.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import numpy as np
from psygnal import Signal

from desktop_app.state.document import Document
from desktop_app.state.geometry import BBox, bbox_empty, bbox_intersection, bbox_shape, bbox_union, to_slices
from desktop_app.state.labels import LabelSnapshot

log = logging.getLogger(__name__)

#: Chunk (k, j, i) of the lazy before-state capture.
CHUNK_SHAPE: tuple[int, int, int] = (8, 64, 64)
#: Bytes counted per entry on top of its payload (Python objects, arrays' headers).
ENTRY_OVERHEAD = 256
#: Payloads smaller than this are kept raw (zlib would cost more than it saves).
_RAW_LIMIT = 512
#: Payloads at least this big try run-length encoding first.
_RLE_MIN = 1 << 16
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def _encode(arr: np.ndarray) -> tuple[bytes, str]:
    """Pack a bbox of mask voxels: raw when tiny, run-length when it pays (big, smooth
    regions such as an AI prediction: ~3x faster than zlib both ways and smaller), else
    zlib level 1."""
    raw = np.ascontiguousarray(arr)
    if raw.nbytes < _RAW_LIMIT:
        return raw.tobytes(), "raw"
    if raw.nbytes >= _RLE_MIN:
        flat = raw.reshape(-1)
        change = flat[1:] != flat[:-1]
        runs = int(np.count_nonzero(change)) + 1
        if runs * 5 < raw.nbytes // 8:
            starts = np.empty(runs, dtype=np.int64)
            starts[0] = 0
            starts[1:] = np.flatnonzero(change) + 1
            del change
            lengths = np.diff(starts, append=flat.size).astype(np.uint32 if flat.size < 2**32 else np.uint64)
            vals = zlib.compress(flat[starts].tobytes(), 1)
            return struct.pack("<QB", len(vals), lengths.itemsize) + vals + zlib.compress(lengths.tobytes(), 1), "rle"
    return zlib.compress(raw.data.cast("B"), 1), "zlib"  # raw.data: memoryview(raw)


def _decode(payload: bytes, codec: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if codec == "raw":
        return np.frombuffer(payload, dtype=dtype).reshape(shape)
    if codec == "zlib":
        return np.frombuffer(zlib.decompress(payload), dtype=dtype).reshape(shape)
    n, width = struct.unpack_from("<QB", payload)
    head = struct.calcsize("<QB")
    vals = np.frombuffer(zlib.decompress(payload[head:head + n]), dtype=dtype)
    lengths: np.ndarray = np.frombuffer(zlib.decompress(payload[head + n:]), dtype=np.uint32 if width == 4 else np.uint64)
    return np.repeat(vals, lengths).reshape(shape)


@dataclass
class _Entry:
    description: str
    bbox: BBox | None
    dtype: np.dtype
    payload: bytes = b""
    codec: str = "raw"  # "raw" | "zlib" | "rle"
    labels: LabelSnapshot | None = None  # label entries of the side not shown

    @property
    def nbytes(self) -> int:
        n = ENTRY_OVERHEAD + len(self.payload)
        if self.labels:
            n += 128 * len(self.labels)
        return n

    def store(self, arr: np.ndarray) -> None:
        self.payload, self.codec = _encode(arr)

    def load(self) -> np.ndarray:
        assert self.bbox is not None
        return _decode(self.payload, self.codec, bbox_shape(self.bbox), self.dtype)


class Transaction:
    """One undoable step being recorded; get it from :meth:`History.begin`."""

    def __init__(self, history: "History", description: str) -> None:
        self.history = history
        self.description = description
        mask = history.document.mask
        if mask is None:
            raise RuntimeError("no mask is open")
        self._mask = mask
        self._grid = tuple(-(-n // c) for n, c in zip(mask.shape, CHUNK_SHAPE))
        self._captured = np.zeros(self._grid, dtype=bool)
        self._chunks: dict[tuple[int, int, int], np.ndarray] = {}
        self._labels_before: LabelSnapshot = {}
        self.chunk_bytes = 0
        self.dirty_bbox: BBox | None = None
        self.open = True

    # ----- recording -------------------------------------------------------------------
    def touch(self, bbox: BBox) -> None:
        """Call before writing into ``bbox``: keeps a copy of what is there the first time."""
        if bbox_empty(bbox):
            return
        c0 = [a // c for (a, _), c in zip(bbox, CHUNK_SHAPE)]
        c1 = [(b - 1) // c + 1 for (_, b), c in zip(bbox, CHUNK_SHAPE)]
        sub = self._captured[c0[0]:c1[0], c0[1]:c1[1], c0[2]:c1[2]]
        if sub.all():
            return
        for off in np.argwhere(~sub):
            key = (int(off[0]) + c0[0], int(off[1]) + c0[1], int(off[2]) + c0[2])
            sl = tuple(slice(k * c, (k + 1) * c) for k, c in zip(key, CHUNK_SHAPE))
            chunk = self._mask[sl].copy()
            self._chunks[key] = chunk
            self.chunk_bytes += chunk.nbytes
        sub[...] = True

    def changed(self, bbox: BBox | None) -> None:
        """Extend the entry's bbox (call after writing; must lie inside touched regions)."""
        self.dirty_bbox = bbox_union(self.dirty_bbox, bbox)

    def track_labels(self, values: "list[int] | set[int]") -> None:
        """Record the label-table entries of ``values`` before the op changes them."""
        table = self.history.document.labels
        for v in values:
            if int(v) not in self._labels_before:
                self._labels_before.update(table.snapshot([int(v)]))

    # ----- closing ---------------------------------------------------------------------
    def commit(self) -> bool:
        return self.history.commit(self)

    def rollback(self) -> None:
        self.history.rollback(self)

    def _before(self, bbox: BBox) -> np.ndarray:
        """Old contents of ``bbox``: current voxels, with captured chunks pasted over."""
        old = self._mask[to_slices(bbox)].copy()
        c0 = [a // c for (a, _), c in zip(bbox, CHUNK_SHAPE)]
        c1 = [(b - 1) // c + 1 for (_, b), c in zip(bbox, CHUNK_SHAPE)]
        sub = self._captured[c0[0]:c1[0], c0[1]:c1[1], c0[2]:c1[2]]
        for off in np.argwhere(sub):
            key = (int(off[0]) + c0[0], int(off[1]) + c0[1], int(off[2]) + c0[2])
            cb = cast(BBox, tuple((k * c, min((k + 1) * c, n)) for k, c, n in zip(key, CHUNK_SHAPE, self._mask.shape)))
            inter = bbox_intersection(cb, bbox)
            if inter is None:
                continue
            src = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, cb))
            dst = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(inter, bbox))
            old[dst] = self._chunks[key][src]
        return old

    def _restore(self) -> None:
        for key, chunk in self._chunks.items():
            sl = tuple(slice(k * c, k * c + n) for k, c, n in zip(key, CHUNK_SHAPE, chunk.shape))
            self._mask[sl] = chunk

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class History:
    """Undo/redo stacks for one document's mask."""

    #: Emitted after commit, undo, redo, clear or a cap drop (menus update their text).
    changed = Signal()

    def __init__(self, document: Document, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.document = document
        self.max_bytes = int(max_bytes)
        self._undo: deque[_Entry] = deque()
        self._redo: deque[_Entry] = deque()
        self._bytes = 0
        self._txn: Transaction | None = None
        self.dropped = 0  # entries dropped by the memory cap since the last clear
        document.image_changed.connect(self.clear)
        document.mask_replaced.connect(self.clear)

    # ----- recording -------------------------------------------------------------------
    def begin(self, description: str) -> Transaction:
        """Open a transaction (an open one is committed first)."""
        if self._txn is not None:
            log.warning("history: %r still open when %r began; committing it", self._txn.description, description)
            self.commit(self._txn)
        self._txn = Transaction(self, description)
        return self._txn

    @contextmanager
    def transaction(self, description: str) -> Iterator[Transaction]:
        """``with history.transaction("Fill") as txn:`` commits, or rolls back on error."""
        txn = self.begin(description)
        with txn:
            yield txn

    @property
    def current(self) -> Transaction | None:
        """The open transaction, if any."""
        return self._txn

    def commit(self, txn: Transaction | None = None) -> bool:
        """Close the open transaction; True when it became an undo entry."""
        txn = txn or self._txn
        if txn is None or not txn.open:
            return False
        txn.open = False
        if self._txn is txn:
            self._txn = None
        if txn._mask is not self.document.mask:
            log.warning("history: mask replaced during %r; entry discarded", txn.description)
            return False
        labels_changed = {
            v: lab for v, lab in txn._labels_before.items() if lab != self.document.labels.snapshot([v])[v]
        }
        if txn.dirty_bbox is None and not labels_changed:
            return False
        entry = _Entry(txn.description, txn.dirty_bbox, txn._mask.dtype, labels=labels_changed or None)
        if txn.dirty_bbox is not None:
            entry.store(txn._before(txn.dirty_bbox))
        txn._chunks.clear()
        self._push(entry)
        return True

    def rollback(self, txn: Transaction | None = None) -> None:
        """Abandon the open transaction, putting back what it overwrote."""
        txn = txn or self._txn
        if txn is None or not txn.open:
            return
        txn.open = False
        if self._txn is txn:
            self._txn = None
        if txn._mask is self.document.mask:
            txn._restore()
            if txn._labels_before:
                self.document.labels.apply_snapshot(txn._labels_before)
            if txn.dirty_bbox is not None:
                self.document.notify_mask_changed(txn.dirty_bbox)
        txn._chunks.clear()

    def apply_full_mask(self, new_mask: np.ndarray, description: str = "AI prediction") -> bool:
        """Replace the whole mask as one undoable step; True when anything changed."""
        mask = self.document.mask
        if mask is None:
            raise RuntimeError("no mask is open")
        if tuple(new_mask.shape) != tuple(mask.shape):
            raise ValueError(f"new mask shape {new_mask.shape} does not match {mask.shape}")
        if new_mask.dtype != mask.dtype:
            info = np.iinfo(mask.dtype)
            lo, hi = (int(new_mask.min()), int(new_mask.max())) if new_mask.size else (0, 0)
            if lo < info.min or hi > info.max:
                raise ValueError(f"label values {lo}..{hi} do not fit the mask's {mask.dtype}")
        bbox = _diff_bbox(mask, new_mask)
        if bbox is None:
            return False
        if self._txn is not None:
            self.commit(self._txn)
        sl = to_slices(bbox)
        entry = _Entry(description, bbox, mask.dtype)
        entry.store(mask[sl])
        mask[sl] = new_mask[sl]
        self.document.labels.ensure(_new_values(mask[sl], set(self.document.labels.labels)))
        self._push(entry)
        self.document.notify_mask_changed(bbox)
        return True

    # ----- undo / redo -------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._undo) or (self._txn is not None and self._txn.dirty_bbox is not None)

    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        return self._undo[-1].description if self._undo else None

    @property
    def redo_description(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    @property
    def undo_text(self) -> str:
        """Menu text, e.g. "Undo Brush stroke" (just "Undo" when there is nothing)."""
        return f"Undo {self.undo_description}" if self.undo_description else "Undo"

    @property
    def redo_text(self) -> str:
        return f"Redo {self.redo_description}" if self.redo_description else "Redo"

    def undo(self) -> bool:
        """Undo the last entry (an open transaction is committed first)."""
        if self._txn is not None:
            self.commit(self._txn)
        if not self._undo:
            return False
        entry = self._undo.pop()
        self._swap(entry)
        self._redo.append(entry)
        self._enforce_cap()
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if self._txn is not None:
            self.commit(self._txn)
        if not self._redo:
            return False
        entry = self._redo.pop()
        self._swap(entry)
        self._undo.append(entry)
        self._enforce_cap()
        self.changed.emit()
        return True

    def clear(self) -> None:
        """Forget everything (new scan, mask replaced outside the history)."""
        if self._txn is not None:
            self._txn.open = False
            self._txn._chunks.clear()
            self._txn = None
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0
        self.dropped = 0
        self.changed.emit()

    # ----- memory ------------------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        """Bytes held by the entries (and the open transaction's chunk copies)."""
        return self._bytes + (self._txn.chunk_bytes if self._txn is not None else 0)

    @property
    def undo_count(self) -> int:
        return len(self._undo)

    @property
    def redo_count(self) -> int:
        return len(self._redo)

    def set_max_bytes(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._enforce_cap()
        self.changed.emit()

    # ----- internals ---------------------------------------------------------------------
    def _push(self, entry: _Entry) -> None:
        self._bytes -= sum(e.nbytes for e in self._redo)
        self._redo.clear()
        self._undo.append(entry)
        self._bytes += entry.nbytes
        self._enforce_cap()
        self.changed.emit()

    def _enforce_cap(self) -> None:
        while self._bytes > self.max_bytes and (self._undo or self._redo):
            old = self._undo.popleft() if self._undo else self._redo.popleft()
            self._bytes -= old.nbytes
            self.dropped += 1
            log.info("history: memory cap %d B reached, dropped %r", self.max_bytes, old.description)

    def _swap(self, entry: _Entry) -> None:
        """Exchange the entry's stored side with what the mask shows now."""
        mask = self.document.mask
        assert mask is not None
        self._bytes -= entry.nbytes
        if entry.labels is not None:
            shown = self.document.labels.snapshot(entry.labels.keys())
            self.document.labels.apply_snapshot(entry.labels)
            entry.labels = shown
        if entry.bbox is not None:
            sl = to_slices(entry.bbox)
            stored = entry.load()
            entry.store(mask[sl])
            mask[sl] = stored
        self._bytes += entry.nbytes
        if entry.bbox is not None:
            self.document.notify_mask_changed(entry.bbox)


def _diff_bbox(a: np.ndarray, b: np.ndarray, slab: int = 16) -> BBox | None:
    """Bbox of the voxels where ``a != b``, computed in k-slabs to bound temporaries."""
    k_hit: list[int] = []
    j_any = np.zeros(a.shape[1], dtype=bool)
    i_any = np.zeros(a.shape[2], dtype=bool)
    for k0 in range(0, a.shape[0], slab):
        ne = a[k0:k0 + slab] != b[k0:k0 + slab]
        per_k = ne.any(axis=(1, 2))
        if not per_k.any():
            continue
        idx = np.flatnonzero(per_k) + k0
        k_hit += [int(idx[0]), int(idx[-1])]
        j_any |= ne.any(axis=(0, 2))
        i_any |= ne.any(axis=(0, 1))
    if not k_hit:
        return None
    j = np.flatnonzero(j_any)
    i = np.flatnonzero(i_any)
    return ((min(k_hit), max(k_hit) + 1), (int(j[0]), int(j[-1]) + 1), (int(i[0]), int(i[-1]) + 1))


def _new_values(arr: np.ndarray, known: set[int], slab: int = 16) -> set[int]:
    """Non-zero values of ``arr`` not in ``known``, without sorting the array: only the
    candidates up to ``arr.max()`` missing from ``known`` are looked for."""
    if arr.size == 0:
        return set()
    top = int(arr.max())
    candidates = [v for v in range(1, top + 1) if v not in known]
    if len(candidates) > 16:
        return {int(v) for v in np.unique(arr).tolist() if v != 0 and v not in known}
    found = set()
    for v in candidates:
        for k0 in range(0, arr.shape[0], slab):
            if (arr[k0:k0 + slab] == v).any():
                found.add(v)
                break
    return found
