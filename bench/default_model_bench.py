"""The bundled default model: size, CPU inference time per case, val Dice with/without TTA.

    .venv/bin/python bench/default_model_bench.py [--threads 1] [--cases 39] [--no-dice]

Reads the validation ids from the model card and the scans from ../shared/data/hippocampus
(skips cleanly when missing). Inference time = `predict_volume` wall time per case after
one warm-up call, median over the cases; compared in the same process with a small 3D
U-Net (base 16, depth 3, untrained: timing only) on the same scans, as the architecture
baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_engine.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.inference import predict_volume  # noqa: E402
from unet_engine.io import read_mask, read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model import ModelSpec, build_model  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hippocampus"
MODEL = ROOT / "resources" / "models" / "default"


def _time(model, card, vols, tta=False) -> list[float]:  # noqa: ANN001
    run_generator(predict_volume(model, card, vols[0], device="cpu", tta=tta))  # warm-up (fuses BN, caches)
    out = []
    for v in vols:
        t = time.perf_counter()
        run_generator(predict_volume(model, card, v, device="cpu", tta=tta))
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, default=39)
    ap.add_argument("--no-dice", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} missing")
        return 0
    torch.set_num_threads(args.threads)
    model, card = load_checkpoint(MODEL, "cpu")
    n_params = sum(p.numel() for p in model.parameters())
    size = (MODEL / "model.safetensors").stat().st_size
    ids = [c["id"] for c in card.training["dataset"]["cases"] if c["split"] == "val"][: args.cases]
    vols = [read_volume(DATA / "imagesTr" / f"{i}.nii.gz") for i in ids]
    print(f"model {card.version}: {card.spec.to_dict()}, {n_params / 1e6:.2f} M parameters, "
          f"model.safetensors {size / 1e6:.2f} MB; {len(ids)} val cases, {args.threads} CPU thread(s)")
    t2 = _time(model, card, vols)
    t2tta = _time(model, card, vols, tta=True)
    spec3 = ModelSpec(dims=3, in_channels=1, num_classes=3, base_width=16, depth=3)
    card3 = ModelCard(spec=spec3, preprocessing=card.preprocessing, labels=card.labels)
    torch.manual_seed(0)
    t3 = _time(build_model(spec3).eval(), card3, vols[: min(10, len(vols))])
    med = statistics.median
    print(f"2D default model: median {med(t2) * 1000:.0f} ms/case (max {max(t2) * 1000:.0f} ms); with flip TTA "
          f"{med(t2tta) * 1000:.0f} ms/case ({med(t2tta) / med(t2):.2f}x)")
    print(f"3D U-Net base 16 depth 3 (timing only): median {med(t3) * 1000:.0f} ms/case = "
          f"{med(t3) / med(t2):.2f}x the 2D model")
    if not args.no_dice:
        for tta in (False, True):
            scores = {1: [], 2: []}
            for i, v in zip(ids, vols):
                ref = np.asarray(read_mask(DATA / "labelsTr" / f"{i}.nii.gz", v))
                pred = run_generator(predict_volume(model, card, v, device="cpu", tta=tta)).labels
                for k in scores:
                    scores[k].append(dice(pred, ref, k))
            print(f"val Dice {'with' if tta else 'without'} flip TTA: anterior {np.mean(scores[1]):.4f}, "
                  f"posterior {np.mean(scores[2]):.4f}, mean {np.mean(scores[1] + scores[2]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
