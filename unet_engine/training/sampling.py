"""Streaming training samples from disk, with replay of earlier cases.

Memory never grows with the dataset: cases are decoded on demand into a small LRU
(:class:`CaseCache`) and each stream (:class:`CaseStream`) keeps a *working set* of at
most ``cache_cases`` cases, draws ``samples_per_case`` slices/patches from each, then
replaces it with the next case of a seeded permutation. Two streams feed every batch:
cases new since the parent model and earlier ("replay") cases, in a fixed proportion.

2D / 2.5D models get slices along the same axis inference uses
(:func:`unet_engine.model.preprocessing.slice_axis_for_spacing` on the preprocessed grid) and
the same normalisation (:func:`unet_engine.model.preprocessing.prepare_image` with the model
card's config); 3D models get patches. Patches reaching past the volume are padded by
edge replication (the image, as inference pads) with loss weight 0 there.

Distributed training: all ranks draw the same case permutation (seeded by pass number)
and each takes every ``world``-th case, so ranks see disjoint cases; patch positions
come from a per-rank generator. Everything random lives in :meth:`ReplaySampler.state`,
a JSON-able dict, so a resumed run draws exactly the batches it would have drawn.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from unet_engine.model.preprocessing import prepare_image, prepare_label, slice_axis_for_spacing

log = logging.getLogger(__name__)

MAX_FOREGROUND_POINTS = 20_000
CACHE_BYTES = 512 << 20  # decoded cases kept beyond the working set, while they fit (small cases: all of them)


@dataclass
class DecodedCase:
    """One case ready for sampling: preprocessed image, labels, edited mask, foreground points."""

    case_id: str
    image: np.ndarray  # float32 [k, j, i], normalised (and resampled) like inference
    label: np.ndarray  # uint8 [k, j, i]
    edits: np.ndarray | None  # bool [k, j, i]
    foreground: np.ndarray  # int32 [N, 3] voxel indices with label > 0 (subsampled)
    axis: int  # slicing axis for 2D models

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.image, self.label, self.foreground) if a is not None) + (
            self.edits.nbytes if self.edits is not None else 0)


def decode_case(dataset: Any, case_id: str, preprocessing: Any) -> DecodedCase:
    """Read one case from ``dataset`` and preprocess it like inference does."""
    volume, label, edits = dataset.load_case(case_id)
    image = prepare_image(volume, preprocessing)
    lab = prepare_label(label, preprocessing, spacing=volume.spacing)
    if lab.shape != image.shape:  # resampling rounding: crop/pad the label to the image grid
        lab = _fit(lab, image.shape)
    ed = None
    if edits is not None:
        ed = _fit(prepare_label(edits.astype(np.uint8), preprocessing, spacing=volume.spacing), image.shape) > 0
    fg = np.argwhere(lab > 0).astype(np.int32)
    if len(fg) > MAX_FOREGROUND_POINTS:
        fg = fg[:: int(np.ceil(len(fg) / MAX_FOREGROUND_POINTS))]
    axis = slice_axis_for_spacing(volume.spacing)  # the axis inference slices along (original spacing)
    return DecodedCase(case_id, image, lab.astype(np.uint8, copy=False), ed, fg, axis)


def _fit(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, arr.dtype)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(arr.shape, shape))
    out[sl] = arr[sl]
    return out


class CaseCache:
    """LRU of decoded cases: always the ``max_cases`` most recently used, and more while all
    of them fit in ``max_bytes`` (a dataset of small cases is decoded once, not once per visit)."""

    def __init__(self, loader: Callable[[str], DecodedCase], max_cases: int, max_bytes: int = CACHE_BYTES) -> None:
        self.loader = loader
        self.max_cases = max(1, int(max_cases))
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, DecodedCase] = OrderedDict()
        self._bytes = 0
        self.loads = 0

    def get(self, case_id: str) -> DecodedCase:
        if case_id in self._items:
            self._items.move_to_end(case_id)
            return self._items[case_id]
        item = self.loader(case_id)
        self.loads += 1
        self._items[case_id] = item
        self._bytes += item.nbytes
        while len(self._items) > self.max_cases and self._bytes > self.max_bytes:
            self._bytes -= self._items.popitem(last=False)[1].nbytes
        return item

    def __len__(self) -> int:
        return len(self._items)


class CaseStream:
    """An endless stream of case ids: seeded permutations, sharded by rank, via a working set."""

    def __init__(self, case_ids: list[str], *, seed: int, tag: int, working_set: int, samples_per_case: int,
                 rank: int = 0, world: int = 1) -> None:
        self.case_ids = sorted(case_ids)
        self.seed, self.tag = int(seed), int(tag)
        self.working_set = max(1, int(working_set))
        self.samples_per_case = max(1, int(samples_per_case))
        self.rank, self.world = int(rank), max(1, int(world))
        self.pass_no = 0
        self.pos = 0
        self.active: list[list[Any]] = []  # [case_id, samples left]
        self._order: list[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.case_ids)

    def _shard(self, pass_no: int) -> list[str]:
        n = len(self.case_ids)
        perm = np.random.default_rng([self.seed, self.tag, pass_no]).permutation(n)
        if n >= self.world:
            return [self.case_ids[i] for i in perm[self.rank :: self.world]]
        return [self.case_ids[perm[self.rank % n]]]

    def _next_case(self) -> str:
        if self._order is None:
            self._order = self._shard(self.pass_no)
        if self.pos >= len(self._order):
            self.pass_no += 1
            self.pos = 0
            self._order = self._shard(self.pass_no)
        cid = self._order[self.pos]
        self.pos += 1
        return cid

    def draw(self, rng: np.random.Generator) -> str:
        """The case for the next sample."""
        n, w = len(self.case_ids), self.world
        shard_len = len(range(self.rank, n, w)) if n >= w else 1
        while len(self.active) < min(self.working_set, shard_len):
            self.active.append([self._next_case(), self.samples_per_case])
        i = int(rng.integers(len(self.active)))
        cid = self.active[i][0]
        self.active[i][1] -= 1
        if self.active[i][1] <= 0:
            self.active.pop(i)
        return cid

    def state(self) -> dict[str, Any]:
        return {"pass_no": self.pass_no, "pos": self.pos, "active": [list(a) for a in self.active]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pass_no, self.pos = int(state["pass_no"]), int(state["pos"])
        self.active = [[str(c), int(n)] for c, n in state["active"]]
        self._order = None


@dataclass
class Sample:
    image: np.ndarray  # float32 [C, *patch]
    label: np.ndarray  # uint8 [*patch]
    weight: np.ndarray  # float32 [*patch]: 0 outside the volume, 1 + edit_weight on edited voxels


class PatchExtractor:
    """Cuts one training sample (2D slice stack or 3D patch) out of a decoded case."""

    def __init__(self, dims: int, context_slices: int, patch: tuple[int, ...], foreground_fraction: float,
                 edit_weight: float) -> None:
        self.dims, self.context = dims, context_slices
        self.patch = tuple(int(p) for p in patch)
        self.fg_fraction = foreground_fraction
        self.edit_weight = edit_weight

    def __call__(self, case: DecodedCase, rng: np.random.Generator) -> Sample:
        use_fg = len(case.foreground) > 0 and rng.random() < self.fg_fraction
        if use_fg:
            centre = case.foreground[int(rng.integers(len(case.foreground)))].astype(np.int64)
        else:
            centre = np.array([int(rng.integers(n)) for n in case.image.shape], dtype=np.int64)
        if self.dims == 2:
            return self._slice(case, centre)
        return self._patch(case, centre, rng, use_fg)

    def _before(self, pad: int) -> int:
        """Padding placed before the data: centred in 2D (as inference's pad_to_multiple), after it in 3D."""
        return pad // 2 if self.dims == 2 else 0

    def _window(self, shape: tuple[int, ...], centre: np.ndarray, jitter: bool, rng: np.random.Generator | None
                ) -> tuple[list[int], list[int]]:
        starts, pads = [], []
        for n, p, c in zip(shape, self.patch, centre):
            if p >= n:  # whole extent fits: centre the volume in the patch (as inference pads)
                starts.append(0)
                pads.append(p - n)
            else:
                lo = int(c) - p // 2
                if jitter and rng is not None:
                    lo += int(rng.integers(-(p // 4), p // 4 + 1))
                starts.append(int(np.clip(lo, 0, n - p)))
                pads.append(0)
        return starts, pads

    def _crop(self, a: np.ndarray | None, starts: list[int], pads: list[int], lead: int,
              mode: Literal["edge", "constant"]) -> np.ndarray | None:
        """Cut the window; pad past the volume with ``mode`` ("edge" for images, "constant" else),
        as ``np.pad`` would, written into one new array (no intermediate copies)."""
        if a is None:
            return None
        inner = tuple(slice(s, s + min(p, n)) for s, p, n in zip(starts, self.patch, a.shape[lead:]))
        if not any(pads):
            return np.ascontiguousarray(a[(slice(None),) * lead + inner])
        before = [self._before(pd) for pd in pads]
        place = tuple(slice(b, b + p - pd) for b, p, pd in zip(before, self.patch, pads))
        out = (np.zeros if mode == "constant" else np.empty)(a.shape[:lead] + self.patch, a.dtype)
        out[(slice(None),) * lead + place] = a[(slice(None),) * lead + inner]
        if mode == "edge":  # axis by axis, over the whole extent of the others: corners as np.pad
            for ax, (b, sl) in enumerate(zip(before, place), start=lead):
                pre = (slice(None),) * ax
                out[pre + (slice(0, b),)] = out[pre + (slice(b, b + 1),)]
                out[pre + (slice(sl.stop, None),)] = out[pre + (slice(sl.stop - 1, sl.stop),)]
        return out

    def _weights(self, shape: tuple[int, ...], starts: list[int], pads: list[int], edits: np.ndarray | None) -> np.ndarray:
        w = np.zeros(self.patch, np.float32)
        inner = tuple(slice(self._before(pd), self._before(pd) + (p - pd)) for p, pd in zip(self.patch, pads))
        w[inner] = 1.0
        if edits is not None and self.edit_weight:
            w += self.edit_weight * edits.astype(np.float32)
        return w

    def _slice(self, case: DecodedCase, centre: np.ndarray) -> Sample:
        ax = case.axis
        n = case.image.shape[ax]
        s = int(centre[ax])
        idx = np.clip(np.arange(s - self.context, s + self.context + 1), 0, n - 1)
        img = np.moveaxis(case.image, ax, 0)[idx]  # [C, H, W], centre slice in the middle channel
        lab = np.moveaxis(case.label, ax, 0)[s]
        ed = np.moveaxis(case.edits, ax, 0)[s] if case.edits is not None else None
        starts, pads = self._window(lab.shape, np.delete(centre, ax), False, None)
        return self._sample(img, lab, ed, starts, pads)

    def _patch(self, case: DecodedCase, centre: np.ndarray, rng: np.random.Generator, jitter: bool) -> Sample:
        starts, pads = self._window(case.image.shape, centre, jitter, rng)
        return self._sample(case.image[None], case.label, case.edits, starts, pads)

    def _sample(self, img: np.ndarray, lab: np.ndarray, ed: np.ndarray | None, starts: list[int], pads: list[int]
                ) -> Sample:
        img_c = self._crop(img, starts, pads, 1, "edge")
        lab_c = self._crop(lab, starts, pads, 0, "constant")
        assert img_c is not None and lab_c is not None  # cut from arrays, not None
        ed_c = self._crop(ed, starts, pads, 0, "constant")
        weight = self._weights(lab.shape, starts, pads, ed_c)
        return Sample(img_c.astype(np.float32, copy=False), lab_c.astype(np.uint8, copy=False), weight)


class ReplaySampler:
    """Batches mixing new cases and replayed earlier cases, streamed through a small LRU."""

    def __init__(self, *, new_ids: list[str], old_ids: list[str], loader: Callable[[str], DecodedCase],
                 extractor: PatchExtractor, batch_size: int, replay_ratio: float, cache_cases: int,
                 samples_per_case: int, seed: int, rank: int = 0, world: int = 1, cache_bytes: int = CACHE_BYTES) -> None:
        if not new_ids and not old_ids:
            raise ValueError("no training cases")
        self.new = CaseStream(new_ids, seed=seed, tag=1, working_set=cache_cases, samples_per_case=samples_per_case,
                              rank=rank, world=world)
        self.old = CaseStream(old_ids, seed=seed, tag=2, working_set=cache_cases, samples_per_case=samples_per_case,
                              rank=rank, world=world)
        self.cache = CaseCache(loader, 2 * max(1, cache_cases), cache_bytes)
        self.extractor = extractor
        self.batch_size = int(batch_size)
        self.replay_ratio = float(replay_ratio)
        self.rng = np.random.default_rng([int(seed), 7919, int(rank)])

    def split(self) -> tuple[int, int]:
        """(new, replayed) samples per batch."""
        b = self.batch_size
        if not self.old:
            return b, 0
        if not self.new:
            return 0, b
        n_old = int(round(b * self.replay_ratio))
        n_old = min(max(n_old, 1 if self.replay_ratio > 0 else 0), b - 1)
        return b - n_old, n_old

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images [B, C, *P], labels [B, *P], weights [B, *P])``."""
        n_new, n_old = self.split()
        samples = []
        for stream, n in ((self.new, n_new), (self.old, n_old)):
            for _ in range(n):
                case = self.cache.get(stream.draw(self.rng))
                samples.append(self.extractor(case, self.rng))
        return (np.stack([s.image for s in samples]), np.stack([s.label for s in samples]),
                np.stack([s.weight for s in samples]))

    def state(self) -> dict[str, Any]:
        return {"new": self.new.state(), "old": self.old.state(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.new.load_state(state["new"])
        self.old.load_state(state["old"])
        self.rng.bit_generator.state = state["rng"]
