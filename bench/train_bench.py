"""Training throughput and memory: images/s and peak RSS on CPU, 20 vs ~200 cases.

    .venv/bin/python bench/train_bench.py [--steps 60] [--threads 1] [--small 20] [--large 195]

Builds two retraining datasets from ../shared/data/hippocampus (real MSD cases) in a temp
folder, then trains the default-sized 2D U-Net (the bundled default model's spec when
present, else ``ModelSpec()``: base width 16, depth 4) for the same number of steps on
each, every run in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own. The
streaming sampler keeps at most ``2 * cache_cases`` decoded cases in memory, so the peak
RSS must not grow with the dataset: the ratio large/small is the figure to watch.
Baseline (same process): RSS after importing torch and building the model, before the
first step. Skips cleanly when the shared data is missing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hippocampus"
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from unet_engine.model.checkpoint import load_checkpoint
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import StepReport, fine_tune

    torch.set_num_threads(args.threads)
    spec = {}
    card_path = BUNDLED_MODELS / "default" / "card.json"
    if card_path.is_file():
        spec = json.loads(card_path.read_text())["spec"]
    ds = RetrainingDataset(args.child)
    cfg = TrainConfig(max_steps=args.steps, steps_per_epoch=args.steps, batch_size=args.batch, num_threads=args.threads,
                      model_spec=spec or None, validate_at_start=False, val_max_cases=2, warmup_steps=5,
                      checkpoint_every_steps=10_000, cache_cases=4, samples_per_case=16, device="cpu")
    rss0 = _rss_mb()
    rates: list[float] = []
    t0 = time.perf_counter()
    res = run_generator(fine_tune(cfg, dataset=ds, registry=ModelRegistry(Path(args.child).parent / "reg"),
                                  from_version="scratch"),
                        lambda r: rates.append(r.images_per_s) if isinstance(r, StepReport) and r.step > 5 else None)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cases": len(ds), "steps": res.steps, "images_per_s": float(np.median(rates)),
                      "peak_rss_mb": peak, "rss_before_training_mb": rss0, "wall_s": wall,
                      "params": sum(p.numel() for p in load_checkpoint(res.checkpoint_path)[0].parameters())}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--small", type=int, default=20)
    p.add_argument("--large", type=int, default=195)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    if not (SHARED / "imagesTr").is_dir():
        print(f"skipped: {SHARED} not found")
        return 0
    from unet_engine.data.importing import import_msd

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            t = time.perf_counter()
            ds = import_msd(SHARED, Path(tmp) / f"ds{n}" / "dataset", labels={1: "anterior", 2: "posterior"}, limit=n)
            print(f"imported {len(ds)} cases in {time.perf_counter() - t:.1f}s", flush=True)
            cmd = [sys.executable, __file__, "--child", str(ds.folder), "--steps", str(args.steps),
                   "--batch", str(args.batch), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{r['cases']:>4} cases: {r['images_per_s']:7.1f} images/s (median), peak RSS {r['peak_rss_mb']:7.1f} MB "
                  f"(baseline before training {r['rss_before_training_mb']:.1f} MB), {r['steps']} steps in "
                  f"{r['wall_s']:.1f}s, {r['params'] / 1e6:.2f} M parameters", flush=True)
    small, large = results
    overhead = [r["peak_rss_mb"] - r["rss_before_training_mb"] for r in (small, large)]
    print(f"cases ratio {large['cases'] / small['cases']:.2f}x -> peak RSS ratio "
          f"{large['peak_rss_mb'] / small['peak_rss_mb']:.3f}x, training-overhead RSS ratio "
          f"{overhead[1] / max(1e-9, overhead[0]):.3f}x, "
          f"throughput ratio {large['images_per_s'] / small['images_per_s']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
