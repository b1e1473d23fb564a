"""CPU training in bfloat16 vs float32: time per step and the validation Dice reached.

    .venv/bin/python bench/train_bf16_bench.py [--steps 300] [--threads 2] [--cases 30] [--seeds 0 1]

Trains the bundled model's 3D U-Net from scratch (``from_version="scratch"``, its spec and
patch) on real hippocampus cases (../shared/data/hippocampus, else the 8 fixture cases) for the
same steps with ``cpu_bf16`` off and on, for each seed, interleaved in one process, and prints
seconds per step and the validation mean Dice at the end (the same validation code and cases
for both). ``TrainConfig.cpu_bf16`` (None: on where the CPU runs bfloat16 fast) rests on this bench.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hippocampus"
FIXTURES = ROOT / "tests" / "data" / "hippocampus"
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    import torch

    from unet_engine.data.importing import import_msd
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import StepReport, fine_tune

    torch.set_num_threads(args.threads)
    card = json.loads((BUNDLED_MODELS / "default" / "card.json").read_text())
    data = SHARED if (SHARED / "imagesTr").is_dir() else FIXTURES
    results: dict[str, list[tuple[float, float]]] = {"float32": [], "bfloat16": []}
    with tempfile.TemporaryDirectory() as tmp:
        ds = import_msd(data, Path(tmp) / "dataset", labels={1: "anterior", 2: "posterior"}, limit=args.cases)
        print(f"{len(ds.train_cases())} training / {len(ds.val_cases())} validation cases, {args.steps} steps, "
              f"{args.threads} thread(s)", flush=True)
        for seed in args.seeds:
            for mode in results:
                cfg = TrainConfig(max_steps=args.steps, steps_per_epoch=args.steps, num_threads=args.threads,
                                  model_spec=card["spec"], patch_size=card["training"]["patch_size"],
                                  preprocessing=card["preprocessing"], batch_size=2, lr=3e-3, warmup_steps=20,
                                  validate_at_start=False, checkpoint_every_steps=100_000, seed=seed,
                                  cpu_bf16=mode == "bfloat16", device="cpu")
                marks: list[float] = []
                t0 = time.perf_counter()
                res = run_generator(fine_tune(cfg, dataset=ds, registry=ModelRegistry(Path(tmp) / f"r{seed}{mode}"),
                                              from_version="scratch"),
                                    lambda r: marks.append(time.perf_counter()) if isinstance(r, StepReport) else None)
                per_step = (marks[-1] - marks[0]) / max(1, len(marks) - 1)
                dice = float(res.metrics.get("val_mean_dice") or float("nan"))
                results[mode].append((per_step, dice))
                print(f"seed {seed} {mode:8s}: {per_step:.3f} s/step, val mean Dice {dice:.4f} "
                      f"({res.metrics.get('val_dice')}), {time.perf_counter() - t0:.0f} s", flush=True)
    for mode, rows in results.items():
        steps = sorted(r[0] for r in rows)
        dices = [r[1] for r in rows]
        print(f"{mode:8s}: median {steps[len(steps) // 2]:.3f} s/step, val mean Dice "
              f"{sum(dices) / len(dices):.4f} (per seed {', '.join(f'{d:.4f}' for d in dices)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
