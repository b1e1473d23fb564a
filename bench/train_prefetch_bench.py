"""Fine-tuning throughput with batches made ahead in a thread vs between steps.

    .venv/bin/python bench/train_prefetch_bench.py [--steps 40] [--threads 1] [--cases 20] [--device auto]

Fine-tunes the bundled 3D model (``from_version="default"``) on real hippocampus cases from
../shared/data/hippocampus (else the 8 fixture cases in tests/data/hippocampus) for the same
steps twice in one process — ``prefetch_batches=0`` (the sampler runs between optimizer
steps) and ``prefetch_batches=2`` (a thread keeps two batches ready, pinned on a GPU) — and
prints patches/s, the ratio, and whether both runs ended with the same weights (they must: the
batches and their order are the same). It also times the sampler alone and a step alone, so
the ceiling of overlapping them is visible.
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


def _run(ds, root: Path, steps: int, prefetch: int, threads: int, device: str) -> tuple[float, str, int]:
    """Wall seconds for the steps after the first two, the weights' hash and the batch size."""
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import StepReport, Trainer

    cfg = TrainConfig(max_steps=steps, steps_per_epoch=steps, num_threads=threads, validate_at_start=False,
                      val_max_cases=0, warmup_steps=2, checkpoint_every_steps=10_000, device=device,
                      prefetch_batches=prefetch)
    trainer = Trainer(cfg, dataset=ds, registry=ModelRegistry(root), from_version="default")
    marks: dict[int, float] = {}
    result = run_generator(trainer.run(), lambda r: marks.setdefault(r.step, time.perf_counter())
                           if isinstance(r, StepReport) else None)
    assert trainer.config.batch_size is not None
    return marks[steps] - marks[2], result.weights_sha256, trainer.config.batch_size


def _parts(ds, root: Path, threads: int, device: str, n: int = 8) -> tuple[float, float]:
    """Seconds per batch of the sampler alone and of a training step on a ready batch."""
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import Trainer

    cfg = TrainConfig(max_steps=100, num_threads=threads, validate_at_start=False, val_max_cases=0, device=device,
                      prefetch_batches=0)
    trainer = Trainer(cfg, dataset=ds, registry=ModelRegistry(root), from_version="default")
    trainer.sampler.next_batch()  # fills the case cache
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.sampler.next_batch()
    data = (time.perf_counter() - t0) / n
    trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.train_step()  # includes its own sampling: subtract it
    step = (time.perf_counter() - t0) / n - data
    trainer.close()
    return data, step


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    data = SHARED if (SHARED / "imagesTr").is_dir() else FIXTURES
    import torch

    from unet_engine.data.importing import import_msd
    from unet_engine.devices import choose_device

    torch.set_num_threads(args.threads)
    device = str(choose_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        ds = import_msd(data, Path(tmp) / "dataset", labels={1: "anterior", 2: "posterior"}, limit=args.cases)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
