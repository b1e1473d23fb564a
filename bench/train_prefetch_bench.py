"""Fine-tuning throughput with batches made ahead in a thread vs between steps.

    .venv/bin/python bench/train_prefetch_bench.py [--steps 40] [--threads 1] [--cases 20] [--device auto]
                                                   [--data FOLDER] [--batches 2 8 16 32]

Fine-tunes the bundled 3D model (``from_version="default"``) on real hippocampus cases from
../shared/data/hippocampus (else the 8 fixture cases in tests/data/hippocampus) for the same
steps twice in one process — ``prefetch_batches=0`` (the sampler runs between optimizer
steps) and ``prefetch_batches=2`` (a thread keeps two batches ready, pinned on a GPU) — and
prints patches/s, the ratio, and whether both runs ended with the same weights (they must: the
batches and their order are the same). It also times the sampler alone and a step alone, so
the ceiling of overlapping them is visible. ``--batches`` also times the prefetched run at
other batch sizes (patches/s against the model's own batch: how many patches a step needs to
keep a GPU busy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hippocampus"
FIXTURES = ROOT / "tests" / "data" / "hippocampus"
sys.path.insert(0, str(ROOT))


def _trainer(ds, root: Path, threads: int, device: str, **fields):
    """A fine-tune of the bundled model on ``ds`` without validation (``fields``: more TrainConfig)."""
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import Trainer

    base = {"max_steps": 100, "prefetch_batches": 0, "validate_at_start": False, "val_max_cases": 0}
    cfg = TrainConfig(num_threads=threads, device=device, **{**base, **fields})
    return Trainer(cfg, dataset=ds, registry=ModelRegistry(root), from_version="default")


def _seconds_per_batch(sampler, warm: int, n: int) -> float:
    """The sampler alone: seconds per batch over ``n`` batches after ``warm`` batches."""
    for _ in range(warm):
        sampler.next_batch()
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.next_batch()
    return (time.perf_counter() - t0) / n


def _run(ds, root: Path, steps: int, prefetch: int, threads: int, device: str,
         batch: int | None = None) -> tuple[float, str, int]:
    """Wall seconds for the steps after the first two, the weights' hash and the batch size."""
    from unet_engine.progress import run_generator
    from unet_engine.training.fine_tune import StepReport

    trainer = _trainer(ds, root, threads, device, max_steps=steps, steps_per_epoch=steps, warmup_steps=2,
                       checkpoint_every_steps=10_000, prefetch_batches=prefetch, batch_size=batch)
    marks: dict[int, float] = {}
    result = run_generator(trainer.run(), lambda r: marks.setdefault(r.step, time.perf_counter())
                           if isinstance(r, StepReport) else None)
    assert trainer.config.batch_size is not None
    return marks[steps] - marks[2], result.weights_sha256, trainer.config.batch_size


def _parts(ds, root: Path, threads: int, device: str, n: int = 8) -> tuple[float, float]:
    """Seconds per batch of the sampler alone and of a training step on a ready batch."""
    trainer = _trainer(ds, root, threads, device)
    data = _seconds_per_batch(trainer.sampler, 1, n)  # the first batch fills the case cache
    trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.train_step()  # includes its own sampling: subtract it
    step = (time.perf_counter() - t0) / n - data
    trainer.close()
    return data, step


def _sampler_rate(ds, root: Path, batch: int, cache_bytes: int, n: int = 150) -> tuple[float, int]:
    """Patches/s of the training sampler alone (after 30 warm-up batches) and cases decoded."""
    from unet_engine.training.sampling import CaseCache

    trainer = _trainer(ds, root, 1, "cpu", batch_size=batch)
    sampler = trainer.sampler
    sampler.cache = CaseCache(sampler.cache.loader, sampler.cache.max_cases, cache_bytes)
    rate = batch / _seconds_per_batch(sampler, 30, n)
    trainer.close()
    return rate, sampler.cache.loads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, default=None, help="MSD-style folder (default: ../shared/data/hippocampus)")
    p.add_argument("--batches", type=int, nargs="*", default=[], help="also time these batch sizes (prefetched)")
    p.add_argument("--sampler", type=int, nargs="*", default=[],
                   help="only time the sampler alone at these batch sizes, cases cached by a byte budget vs the working set only")
    args = p.parse_args()
    data = args.data or (SHARED if (SHARED / "imagesTr").is_dir() else FIXTURES)
    import torch

    from unet_engine.data.importing import import_msd
    from unet_engine.devices import choose_device

    torch.set_num_threads(args.threads)
    device = str(choose_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        ds = import_msd(data, Path(tmp) / "dataset", labels={1: "anterior", 2: "posterior"}, limit=args.cases)
        if args.sampler:
            from unet_engine.training.sampling import CACHE_BYTES

            print(f"sampler alone, one thread, {len(ds)} cases: patches/s (cases decoded) -- working set only vs "
                  f"{CACHE_BYTES >> 20} MiB cache")
            for b in args.sampler:
                old, old_loads = _sampler_rate(ds, Path(tmp) / f"s{b}a", b, 0)
                new, new_loads = _sampler_rate(ds, Path(tmp) / f"s{b}b", b, CACHE_BYTES)
                print(f"batch {b}: {old:.0f} ({old_loads}) -> {new:.0f} ({new_loads}) = {new / old:.2f}x")
            return 0
        data_s, step_s = _parts(ds, Path(tmp) / "parts", args.threads, device)
        print(f"device {device}, {args.threads} torch thread(s), {len(ds)} cases; per batch: sampler {data_s * 1e3:.1f} ms, "
              f"step on a ready batch {step_s * 1e3:.1f} ms (overlap ceiling {(data_s + step_s) / max(data_s, step_s):.2f}x)")
        walls: dict[int, list[float]] = {0: [], 2: []}
        hashes: dict[int, str] = {}
        batch = 0
        for rep, prefetch in enumerate((0, 2, 0, 2)):
            wall, sha, batch = _run(ds, Path(tmp) / f"reg{rep}", args.steps, prefetch, args.threads, device)
            walls[prefetch].append(wall)
            hashes.setdefault(prefetch, sha)
            assert hashes[prefetch] == sha, "the same run twice gave different weights"
        n = (args.steps - 2) * batch
        rate = {k: n / min(v) for k, v in walls.items()}
        print(f"patches/s (best of 2, batch {batch}, {args.steps - 2} steps): between steps {rate[0]:.1f}, "
              f"prefetched {rate[2]:.1f} -> {rate[2] / rate[0]:.2f}x")
        print(f"same weights with and without prefetching: {hashes[0] == hashes[2]}")
        for b in args.batches:
            wall, _, _ = _run(ds, Path(tmp) / f"batch{b}", args.steps, 2, args.threads, device, batch=b)
            r = (args.steps - 2) * b / wall
            print(f"batch {b}: {r:.1f} patches/s ({r / rate[2]:.2f}x batch {batch}), {wall / (args.steps - 2) * 1e3:.1f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
