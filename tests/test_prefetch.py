"""Batches prepared ahead in a thread: same batches, same order, resumable state, errors passed on."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from unet_engine.training.prefetch import BatchPrefetcher


class CountingSource:
    """A seeded batch source with a state, like the training sampler."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.rng = np.random.default_rng(3)
        self.made = 0
        self.fail_at = fail_at

    def next_batch(self):
        if self.made == self.fail_at:
            raise OSError("case file vanished")
        self.made += 1
        images = self.rng.random((2, 1, 4, 4), dtype=np.float32)
        return images, (images > 0.5).astype(np.uint8), np.ones((2, 4, 4), np.float32)

    def state(self):
        return {"rng": self.rng.bit_generator.state, "made": self.made}

    def load_state(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.made = state["made"]


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "segloop-batch-prefetch"]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_batches_come_in_the_sources_order(depth):
    plain = CountingSource()
    expected = [plain.next_batch() for _ in range(6)]
    with BatchPrefetcher(CountingSource(), depth=depth) as ahead:
        got = [ahead.next() for _ in range(6)]
    for (images, labels, weights), batch in zip(expected, got, strict=True):
        assert np.array_equal(batch.images.numpy(), images) and np.array_equal(batch.labels.numpy(), labels)
        assert batch.labels.dtype.is_floating_point is False and batch.size == 2
        assert np.array_equal(batch.weights.numpy(), weights)
    assert not _threads()


def test_saved_state_resumes_at_the_next_batch_not_yet_taken():
    source = CountingSource()
    with BatchPrefetcher(source, depth=3) as ahead:
        for _ in range(4):
            ahead.next()
        state = ahead.sampler_state()  # the thread has made batches beyond the 4th by now, or soon will
        following = ahead.next()
    resumed = CountingSource()
    resumed.load_state(state)
    assert state["made"] == 4
    assert np.array_equal(resumed.next_batch()[0], following.images.numpy())


def test_an_error_in_the_source_reaches_the_trainer():
    with BatchPrefetcher(CountingSource(fail_at=2), depth=2) as ahead:
        ahead.next()
        ahead.next()
        with pytest.raises(OSError, match="case file vanished"):
            ahead.next()
    assert not _threads()
