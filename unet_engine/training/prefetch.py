"""Training batches prepared one step ahead in a background thread.

Sampling and cropping patches from decoded cases is NumPy work on the host; done between
optimizer steps it leaves a GPU idle. :class:`BatchPrefetcher` runs the sampler in a thread
``depth`` batches ahead and hands over tensors (in pinned memory when the device is a GPU,
so the copy to the device can overlap the step), with each batch's augmentation parameters
and noise when the source draws them (:class:`AugmentedSource`: a GPU step then copies them
without waiting). The batches and their order are exactly
the sampler's, so a run's results do not depend on prefetching; :meth:`sampler_state` is
the sampler's state *before the next batch the trainer will take*, which is what a saved
run must hold to resume bit-for-bit.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from unet_engine.training.augment import Augmenter, AugmentParams


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
#: what a source makes: images, labels, weights, and (from :class:`AugmentedSource`) the augmentation
Made = Arrays | tuple[np.ndarray, np.ndarray, np.ndarray, AugmentParams]


class BatchSource(Protocol):
    """What the prefetcher runs (:class:`~unet_engine.training.sampling.ReplaySampler`, or the
    trainer's sampler with the batch's augmentation drawn alongside as a fourth item)."""

    def next_batch(self) -> Made: ...

    def state(self) -> dict[str, Any]: ...


@dataclass
class Batch:
    """Images ``[B, C, *P]`` (float32), labels ``[B, *P]`` (int64), loss weights ``[B, *P]`` and
    the batch's augmentation (if its source drew one), on the host."""

    images: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    aug: AugmentParams | None = None

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nb = self.images.is_pinned()
        return (self.images.to(device, non_blocking=nb), self.labels.to(device, non_blocking=nb),
                self.weights.to(device, non_blocking=nb))


def as_batch(made: Made, pin: bool) -> Batch:
    images, labels, weights = made[:3]
    aug = made[3] if len(made) > 3 else None
    b = Batch(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(weights), aug)
    if pin:
        b = Batch(b.images.pin_memory(), b.labels.pin_memory(), b.weights.pin_memory(),
                  None if aug is None else aug.pinned())
    return b


class ArraySource(Protocol):
    """A sampler of plain batches (:class:`~unet_engine.training.sampling.ReplaySampler`)."""

    def next_batch(self) -> Arrays: ...

    def state(self) -> dict[str, Any]: ...


class AugmentedSource:
    """The sampler's batches, each with its augmentation drawn from ``gen`` right after it:
    the same order of random numbers as drawing at each step, wherever the batch is made."""

    def __init__(self, sampler: ArraySource, augmenter: Augmenter, gen: torch.Generator) -> None:
        self.sampler, self.augmenter, self.gen = sampler, augmenter, gen

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, AugmentParams]:
        images, labels, weights = self.sampler.next_batch()
        return images, labels, weights, self.augmenter.draw(tuple(images.shape), self.gen)

    def state(self) -> dict[str, Any]:
        """The sampler's state and the augmentation generator's (a byte tensor), before the next batch."""
        return {"sampler": self.sampler.state(), "aug_rng": self.gen.get_state()}


class BatchPrefetcher:
    """Up to ``depth`` batches of ``source`` made ahead in a daemon thread; ``depth`` 0 makes them on demand."""

    def __init__(self, source: BatchSource, *, depth: int = 2, pin: bool = False) -> None:
        self.source, self.depth, self.pin = source, max(0, int(depth)), bool(pin)
        self._ready: deque[tuple[dict[str, Any], Batch]] = deque()  # (sampler state before the batch, batch)
        self._cond = threading.Condition()
        self._busy = False  # the thread is between reading the state and queueing the batch
        self._error: BaseException | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        if self.depth:
            self._thread = threading.Thread(target=self._run, name="segloop-batch-prefetch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or len(self._ready) < self.depth)
                if self._stop:
                    return
                self._busy = True
            try:
                before = self.source.state()
                batch = as_batch(self.source.next_batch(), self.pin)
            except BaseException as exc:  # noqa: BLE001 - handed to the trainer's thread by next()
                with self._cond:
                    self._error, self._busy = exc, False
                    self._cond.notify_all()
                return
            with self._cond:
                self._ready.append((before, batch))
                self._busy = False
                self._cond.notify_all()

    def next(self) -> Batch:
        """The next batch, in the sampler's order (raises what the sampler raised)."""
        if self._thread is None:
            return as_batch(self.source.next_batch(), self.pin)
        with self._cond:
            self._cond.wait_for(lambda: bool(self._ready) or self._error is not None)
            if not self._ready:
                assert self._error is not None
                raise self._error
            _, batch = self._ready.popleft()
            self._cond.notify_all()
            return batch

    def sampler_state(self) -> dict[str, Any]:
        """The sampler's state before the next batch :meth:`next` returns."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            if self._ready:
                return self._ready[0][0]
            return self.source.state()

    def close(self) -> None:
        """Stop the thread (it finishes the batch it is making); batches not taken are dropped."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
