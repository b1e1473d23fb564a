"""CPU inference in bfloat16 vs float32: speed on a CT-sized volume, Dice on real cases.

    .venv/bin/python bench/cpu_bf16_bench.py [--threads 1] [--cases 39] [--shape 96 256 256]

On a CPU with bfloat16 matrix units (Intel AMX) the engine runs CPU inference under bfloat16
autocast (``unet_engine.devices.cpu_bf16_is_fast``; ``SEGLOOP_CPU_BF16`` overrides). In one
process, switching the choice between runs, this prints for the bundled 3D model:

* the probe's choice on this CPU;
* wall time on a CT-like volume (``bench/full_size_bench.py``'s ``ct_like``), float32 vs
  bfloat16 interleaved, best of ``--repeats``, and the labels' agreement;
* on the hippocampus validation split the bundled card lists (``../shared/data/hippocampus``):
  mean Dice per label (anterior / posterior) both ways, the largest per-case change, label
  agreement, and median ms per case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.full_size_bench import ct_like  # noqa: E402
from unet_engine import devices  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.io.volume_io import read_mask, read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hippocampus"
MODES = {"float32": "0", "bfloat16": "1"}


def use(mode: str) -> None:
    os.environ[devices.CPU_BF16_ENV] = MODES[mode]
    devices.cpu_bf16_is_fast.cache_clear()


def predict(model: torch.nn.Module, card: ModelCard, volume: Volume) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    labels = run_generator(predict_volume(model, card, volume, device="cpu")).labels
    return labels, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, default=39)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.pop(devices.CPU_BF16_ENV, None)
    print(f"probe on this CPU: bfloat16 {'chosen' if devices.cpu_bf16_is_fast() else 'not chosen'}; "
          f"{args.threads} thread(s)", flush=True)
    model, card = load_checkpoint(BUNDLED_MODELS / "default", device="cpu")

    vol = ct_like(tuple(args.shape))
    best: dict[str, float] = {}
    labels: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for mode in MODES:
            use(mode)
            labels[mode], t = predict(model, card, vol)
            best[mode] = min(best.get(mode, float("inf")), t)
    agree = float((labels["float32"] == labels["bfloat16"]).mean())
    print(f"{vol.shape} CT-like volume: float32 {best['float32']:.2f} s, bfloat16 {best['bfloat16']:.2f} s -> "
          f"{best['float32'] / best['bfloat16']:.2f}x; labels equal on {100 * agree:.4f} % of voxels", flush=True)

    if not DATA.is_dir():
        print(f"Dice skipped: {DATA} missing")
        return 0
    ids = [c["id"] for c in card.training["dataset"]["cases"] if c["split"] == "val"][: args.cases]
    scores: dict[str, dict[int, list[float]]] = {m: {1: [], 2: []} for m in MODES}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    agreement = []
    for cid in ids:
        volume = read_volume(DATA / "imagesTr" / f"{cid}.nii.gz")
        ref = np.asarray(read_mask(DATA / "labelsTr" / f"{cid}.nii.gz", volume))
        out = {}
        for mode in MODES:
            use(mode)
            predict(model, card, volume)  # warm (prepared model, allocator)
            out[mode], t = predict(model, card, volume)
            times[mode].append(t)
            for k in (1, 2):
                scores[mode][k].append(dice(out[mode], ref, k))
        agreement.append(float((out["float32"] == out["bfloat16"]).mean()))
    for mode in MODES:
        a, p = (float(np.mean(scores[mode][k])) for k in (1, 2))
        print(f"{len(ids)} hippocampus val cases, {mode}: Dice {a:.4f} / {p:.4f} (mean {(a + p) / 2:.4f}), "
              f"median {statistics.median(times[mode]) * 1e3:.0f} ms/case")
    worst = max(abs(x - y) for k in (1, 2) for x, y in zip(scores["float32"][k], scores["bfloat16"][k]))
    print(f"largest per-case Dice change {worst:.4f}; labels equal on {100 * min(agreement):.3f} % of voxels "
          f"(worst case), {100 * float(np.mean(agreement)):.4f} % (mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
