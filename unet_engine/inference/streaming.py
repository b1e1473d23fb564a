"""View-first streaming for :func:`unet_engine.inference.predict.predict_volume`.

With a ``focus`` voxel the work nearest to it runs first and every finished part is
yielded as :class:`PartialProgress` carrying :class:`PartialLabels`: labels on the input
grid that are *final* (equal, voxel for voxel, to the returned prediction's):

* 2D / 2.5D: the same batches of slices as without a focus (same numerics), the batch
  holding the focus slice first, then outward (:func:`nearest_first`);
* 3D: the same batches of windows, those covering the plane in view first, nearest the
  focus first (:func:`window_groups`); :class:`OrderedBlend` cuts the volume into cells at
  every window edge and adds each window's weighted output to every cell in the original
  window order (parts that arrive early wait), so the floating-point sums are
  bit-identical, and reports the cells no window will touch again;
* :class:`CellMapper` maps finished working-grid cells to input-grid boxes; for models that
  resample, an input box is mapped back as soon as every resampled voxel its linear
  interpolation reads is final (:class:`~unet_engine.inference.resampling.Resampler`, whose
  result on a box is bit-identical to the final
  :meth:`~unet_engine.inference.resampling.BackProjection.finish` there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unet_engine.progress import Progress
from unet_engine.inference.resampling import Resampler
from unet_engine.inference.sliding_window import Blender
from unet_engine.inference.tta import argmax_labels
from unet_engine.volume import Region, region3, whole_region

ProbsFn = Callable[[Region], torch.Tensor]  # [C, k, j, i] probabilities of a finished working-grid box
MAP_CHUNK_POINTS = 1 << 21  # input voxels (per class) resampled at a time for a partial result


@dataclass(frozen=True)
class PartialLabels:
    """Final labels (uint8 ``[k, j, i]``) of ``region`` (3 slices, input grid)."""

    region: Region
    labels: np.ndarray


@dataclass
class PartialProgress(Progress):
    """A progress report that also carries a finished part of the result."""

    partial: PartialLabels | None = None


def reports(fraction: float, message: str, step: int, total: int, partials: Sequence[PartialLabels]) -> list[Progress]:
    """One :class:`PartialProgress` per partial result, or one plain :class:`Progress`."""
    if not partials:
        return [Progress(fraction, message, step, total)]
    return [PartialProgress(fraction, message, step, total, partial=p) for p in partials]


# ----- order ----------------------------------------------------------------------------------


def _distance(interval: tuple[int, int], focus: int) -> int:
    a, b = interval
    return 0 if a <= focus < b else (a - focus if a > focus else focus - (b - 1))


def nearest_first(intervals: Sequence[tuple[int, int]], focus: int) -> list[int]:
    """Indices of ``intervals`` (half-open) by distance to ``focus``; ties keep their order."""
    return sorted(range(len(intervals)), key=lambda i: (_distance(intervals[i], focus), i))


def batch_plan(n: int, batch: int, start: int = 0) -> list[tuple[int, int]]:
    """Half-open chunks of ``n`` items in equal batches of at most ``batch`` (35 at 32: 18 + 17)."""
    chunks, done = [], 0
    while done < n:
        remaining = n - done
        take = -(-remaining // -(-remaining // max(1, batch)))
        chunks.append((start + done, start + done + take))
        done += take
    return chunks


def window_key(window: tuple[slice, ...], axis: int, focus: Sequence[int]) -> tuple[int, int]:
    """Sort key of a window: its distance along ``axis`` to the plane in view, then in-plane to the focus."""
    d = [_distance((w.start, w.stop), int(f)) for w, f in zip(window, focus)]
    return d[axis], sum(x * x for a, x in enumerate(d) if a != axis)


def window_groups(windows: Sequence[tuple[slice, ...]], batch: int, axis: int,
                  focus: Sequence[int] | None) -> list[list[int]]:
    """Batches of window indices as without a focus (consecutive ``batch``); with a focus
    voxel, the batches covering the plane of ``axis`` through it first, nearest it first."""
    n, b = len(windows), max(1, batch)
    groups = [list(range(i, min(n, i + b))) for i in range(0, n, b)]
    if focus is None:
        return groups
    best = [min(window_key(windows[i], axis, focus) for i in g) for g in groups]
    return [groups[g] for g in sorted(range(len(groups)), key=lambda g: (best[g], g))]


def merge_runs(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged half-open intervals."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def merge_boxes(cells: Sequence[tuple[int, ...]]) -> list[list[tuple[int, int]]]:
    """Index cells merged into fewer boxes (per axis half-open index ranges), axis by axis."""
    boxes = [[(c, c + 1) for c in cell] for cell in cells]
    for ax in reversed(range(len(boxes[0]) if boxes else 0)):
        boxes.sort(key=lambda bx: tuple(r for a, r in enumerate(bx) if a != ax) + (bx[ax],))
        merged: list[list[tuple[int, int]]] = []
        for bx in boxes:
            last = merged[-1] if merged else None
            if last is not None and last[ax][1] == bx[ax][0] and all(last[a] == bx[a] for a in range(len(bx)) if a != ax):
                last[ax] = (last[ax][0], bx[ax][1])
            else:
                merged.append(list(bx))
        boxes = merged
    return boxes


def cuts_of(windows: Sequence[tuple[slice, ...]], shape: Sequence[int]) -> list[list[int]]:
    """Per axis, every window edge inside ``shape`` (with 0 and the size)."""
    return [sorted({0, int(n)} | {min(int(n), w[a].start) for w in windows} | {min(int(n), w[a].stop) for w in windows})
            for a, n in enumerate(shape)]


# ----- 3D: order-preserving blend ---------------------------------------------------------------


class OrderedBlend:
    """Adds windows to a :class:`Blender` in any order, each voxel's sum in the original order.

    The volume is cut into cells at every window edge; per cell the windows covering it are
    added in their original order (a part that arrives before its turn is kept until
    then). :meth:`add` returns the cells (index triples into ``intervals``) just finished.
    """

    def __init__(self, blender: Blender, windows: Sequence[tuple[slice, ...]]) -> None:
        self.blender, self.windows = blender, list(windows)
        self.intervals = [list(zip(c[:-1], c[1:])) for c in cuts_of(windows, blender.shape)]
        self.parts: list[list[tuple[int, ...]]] = []
        self.queue: dict[tuple[int, ...], list[int]] = {}
        for wi, w in enumerate(self.windows):
            ranges = [[t for t, (a, b) in enumerate(iv) if s.start <= a and b <= s.stop] for iv, s in zip(self.intervals, w)]
            cells = list(itertools.product(*ranges))
            self.parts.append(cells)
            for cell in cells:
                self.queue.setdefault(cell, []).append(wi)
        self.pos = dict.fromkeys(self.queue, 0)
        self.pending: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}

    def add(self, values: torch.Tensor, indices: Sequence[int]) -> list[tuple[int, ...]]:
        """Add the window outputs ``values`` ``[B, C, *patch]`` of windows ``indices``."""
        values = self.blender.weigh(values)
        newly: list[tuple[int, ...]] = []
        for b, wi in enumerate(indices):
            for cell in self.parts[wi]:
                part = values[b][(slice(None), *self._local(cell, wi))]
                q = self.queue[cell]
                if q[self.pos[cell]] != wi:
                    self.pending[(cell, wi)] = part.clone()
                    continue
                self._put(cell, wi, part)
                while self.pos[cell] < len(q) and (cell, q[self.pos[cell]]) in self.pending:
                    nxt = q[self.pos[cell]]
                    self._put(cell, nxt, self.pending.pop((cell, nxt)))
                if self.pos[cell] == len(q):
                    newly.append(cell)
        return newly

    def box(self, cell: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(*iv[t]) for iv, t in zip(self.intervals, cell))

    def _local(self, cell: tuple[int, ...], wi: int) -> tuple[slice, ...]:
        return tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(self.box(cell), self.windows[wi]))

    def _put(self, cell: tuple[int, ...], wi: int, part: torch.Tensor) -> None:
        self.blender.put(part, self.box(cell), first=self.pos[cell] == 0)
        self.pos[cell] += 1


# ----- working grid -> input grid --------------------------------------------------------------


class CellMapper:
    """Final input-grid labels of finished working-grid cells.

    ``box``: where the working grid lies in the input (no resampling); ``clip``: the
    requested region (partials are cut to it). Models that resample: ``resampled`` is the
    shape of the model's grid (the input grid is ``input_shape``) and ``work_box`` where the
    working grid lies on it (default all of it); only ``clip`` (default the whole input) is
    mapped back. The core doing the work sets the cell edges (:meth:`reset`) and reports
    finished boxes made of whole cells.
    """

    def __init__(self, input_shape: Sequence[int], box: Region | None = None, clip: Region | None = None,
                 resampled: Sequence[int] | None = None, work_box: Sequence[slice] | None = None) -> None:
        self.input_shape = tuple(int(n) for n in input_shape)
        self.box = box or whole_region(self.input_shape)
        self.clip = clip
        self.resampled = None if resampled is None or tuple(resampled) == self.input_shape else tuple(int(n) for n in resampled)
        if self.resampled is not None:
            self.back = Resampler(self.resampled, self.input_shape)
            work = work_box or whole_region(self.resampled)
            self.origin = tuple(w.start for w in work)
            self.work_shape = tuple(w.stop - w.start for w in work)
            self.out = clip or whole_region(self.input_shape)
            self.reads = [self._reads(a) for a in range(3)]

    def reset(self, cuts: Sequence[Sequence[int]]) -> None:
        """Start over with cells cut at ``cuts`` (per axis, the edges of the working grid, with 0 and the size)."""
        self.cuts = [np.asarray(c, np.int64) for c in cuts]
        self.done = np.zeros([len(c) - 1 for c in self.cuts], bool)
        if self.resampled is not None:
            self.segments = [self._segments(a) for a in range(3)]
            self.emitted = np.zeros([len(s) for s in self.segments], bool)

    def focus_index(self, focus: Sequence[int]) -> tuple[int, ...]:
        """The working-grid voxel nearest input voxel ``focus``."""
        if self.resampled is None:
            return tuple(int(np.clip(f - b.start, 0, b.stop - b.start - 1)) for f, b in zip(focus, self.box))
        zoom = [np.float64(r) / np.float64(n) for r, n in zip(self.resampled, self.input_shape)]
        return tuple(int(np.clip(round(float((f + 0.5) * z - 0.5)) - o, 0, n - 1))
                     for f, z, o, n in zip(focus, zoom, self.origin, self.work_shape))

    def __call__(self, boxes: Sequence[Region], probs: ProbsFn) -> list[PartialLabels]:
        """Partials made final by the finished working-grid ``boxes`` (``probs`` reads finished boxes)."""
        if not boxes:
            return []
        fresh = []
        for bx in boxes:
            idx = tuple(slice(int(np.searchsorted(c, s.start)), int(np.searchsorted(c, s.stop))) for c, s in zip(self.cuts, bx))
            self.done[idx] = True
            fresh.append(idx)
        if self.resampled is None:
            return self._direct(fresh, probs)
        return self._mapped(probs)

    # ----- no resampling: cells as they are ---------------------------------------------------
    def _direct(self, fresh: list[tuple[slice, ...]], probs: ProbsFn) -> list[PartialLabels]:
        cells = sorted({c for idx in fresh for c in itertools.product(*(range(s.start, s.stop) for s in idx))})
        out: list[PartialLabels] = []
        for ranges in merge_boxes(cells):
            work = region3(slice(int(c[a]), int(c[b])) for c, (a, b) in zip(self.cuts, ranges))
            with torch.inference_mode():
                labels = argmax_labels(probs(work)).cpu().numpy()
            region = region3(slice(o.start + w.start, o.start + w.stop) for o, w in zip(self.box, work))
            out.extend(self._clipped(region, labels))
        return out

    # ----- resampling: input boxes whose interpolation reads only finished voxels ---------------
    def _reads(self, ax: int) -> tuple[np.ndarray, np.ndarray]:
        """Per input index of ``out`` along ``ax``: the two working-grid indices linear interpolation reads."""
        m, r = self.back.maps[ax], self.out[ax]
        return m.lo[r] - self.origin[ax], m.hi[r] - self.origin[ax]

    def _segments(self, ax: int) -> list[tuple[int, int, int, int]]:
        """Input runs along ``ax`` reading the same working cells: ``(o0, o1, cell_lo, cell_hi)``."""
        lo, hi = self.reads[ax]
        c = self.cuts[ax]
        tlo, thi = np.searchsorted(c, lo, "right") - 1, np.searchsorted(c, hi, "right") - 1
        out: list[tuple[int, int, int, int]] = []
        for o, key in enumerate(zip(tlo.tolist(), thi.tolist()), start=self.out[ax].start):
            if out and out[-1][2:] == key:
                out[-1] = (out[-1][0], o + 1, *key)
            else:
                out.append((o, o + 1, *key))
        return out

    def _ready(self) -> np.ndarray:
        ready = np.ones(self.emitted.shape, bool)
        lo = [np.array([s[2] for s in seg]) for seg in self.segments]
        hi = [np.array([s[3] for s in seg]) for seg in self.segments]
        for pick in itertools.product(*zip(lo, hi)):
            ready &= self.done[np.ix_(*pick)]
        return ready

    def _mapped(self, probs: ProbsFn) -> list[PartialLabels]:
        ready = self._ready() & ~self.emitted
        self.emitted |= ready
        out: list[PartialLabels] = []
        for ranges in merge_boxes([tuple(int(v) for v in c) for c in np.argwhere(ready)]):
            region = region3(slice(self.segments[a][r0][0], self.segments[a][r1 - 1][1]) for a, (r0, r1) in enumerate(ranges))
            out.extend(self._interpolated(region, probs))
        return out

    def _interpolated(self, region: Region, probs: ProbsFn) -> list[PartialLabels]:
        """Labels of input ``region``: the finished working box it reads, resampled as the final result is."""
        plane = (region[1].stop - region[1].start) * (region[2].stop - region[2].start)
        step = max(1, MAP_CHUNK_POINTS // max(plane, 1))
        out: list[PartialLabels] = []
        for k0 in range(region[0].start, region[0].stop, step):
            part = (slice(k0, min(region[0].stop, k0 + step)), region[1], region[2])
            src_box = self.back.reads(part)
            local = region3(slice(s.start - o, s.stop - o) for s, o in zip(src_box, self.origin))
            with torch.inference_mode():
                p = self.back(probs(local), [s.start for s in src_box], part)
                labels = argmax_labels(p).cpu().numpy()
            out.extend(self._clipped(part, labels))
        return out

    def _clipped(self, region: Region, labels: np.ndarray) -> list[PartialLabels]:
        if self.clip is None:
            return [PartialLabels(region, np.ascontiguousarray(labels))]
        cut = region3(slice(max(r.start, c.start), min(r.stop, c.stop)) for r, c in zip(region, self.clip))
        if any(c.stop <= c.start for c in cut):
            return []
        local = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(cut, region))
        return [PartialLabels(cut, np.ascontiguousarray(labels[local]))]
