"""Default-model candidates side by side: size, CPU inference time per case, val Dice with/without TTA.

    .venv/bin/python bench/default_model_bench.py [--threads 1] [--cases 39] [--no-dice] \
        [--largest-component] [--models default /path/to/other/checkpoint ...]

Every model is scored on the same validation cases: the ids the bundled default model's
card lists as its validation split (all candidates were trained on the same split), read
from ../shared/data/hippocampus (skips cleanly when missing). Inference time =
`predict_volume` wall time per case after one warm-up call, median over the cases, the
models timed in turn in one process, so the ratios to the first model compare like with
like. ``default`` = the bundled model (unet_engine/resources/models/default). ``--largest-component`` adds
the Dice after nnU-Net-style post-processing (keep the largest connected foreground component).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_engine.model.checkpoint import load_card, load_checkpoint  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.io.volume_io import read_mask, read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hippocampus"
MODEL = ROOT / "unet_engine" / "resources" / "models" / "default"


def _time(model, card, vols, tta=False) -> list[float]:
    run_generator(predict_volume(model, card, vols[0], device="cpu", tta=tta))  # warm-up (fuses BN, caches)
    out = []
    for v in vols:
        t = time.perf_counter()
        run_generator(predict_volume(model, card, v, device="cpu", tta=tta))
        out.append(time.perf_counter() - t)
    return out


def largest_component(labels: np.ndarray) -> np.ndarray:
    """``labels`` with everything outside the largest connected foreground component set to 0."""
    comp, n = ndimage.label(labels > 0)
    if n <= 1:
        return labels
    sizes = np.bincount(comp.ravel())[1:]
    return np.where(comp == 1 + int(np.argmax(sizes)), labels, 0).astype(labels.dtype)


def _dice(model, card, ids, vols, refs, tta: bool, post=None) -> tuple[float, float]:
    scores: dict[int, list[float]] = {1: [], 2: []}
    for v, ref in zip(vols, refs):
        pred = run_generator(predict_volume(model, card, v, device="cpu", tta=tta)).labels
        pred = post(pred) if post else pred
        for k in scores:
            scores[k].append(dice(pred, ref, k))
    return float(np.mean(scores[1])), float(np.mean(scores[2]))


def _describe(card) -> str:
    s = card.spec
    kind = "3D" if s.dims == 3 else (f"2.5D (+-{s.context_slices} slices)" if s.context_slices else "2D")
    return f"{kind} base {s.base_width} depth {s.depth}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, default=39)
    ap.add_argument("--no-dice", action="store_true")
    ap.add_argument("--largest-component", action="store_true", help="also score with largest-component post-processing")
    ap.add_argument("--models", nargs="+", default=["default"], help="checkpoint folders ('default' = bundled)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} missing")
        return 0
    torch.set_num_threads(args.threads)
    bundled = load_card(MODEL)
    ids = [c["id"] for c in bundled.training["dataset"]["cases"] if c["split"] == "val"][: args.cases]
    vols = [read_volume(DATA / "imagesTr" / f"{i}.nii.gz") for i in ids]
    refs = [np.asarray(read_mask(DATA / "labelsTr" / f"{i}.nii.gz", v)) for i, v in zip(ids, vols)]
    print(f"{len(ids)} val cases of {bundled.version}'s split, {args.threads} CPU thread(s)")
    rows, base = [], None
    for name in args.models:
        folder = MODEL if name == "default" else Path(name)
        model, card = load_checkpoint(folder, "cpu")
        n_params = sum(p.numel() for p in model.parameters())
        size = (folder / "model.safetensors").stat().st_size
        t = statistics.median(_time(model, card, vols))
        t_tta = statistics.median(_time(model, card, vols, tta=True))
        base = base or t
        row = (f"| {card.version} ({name}) | {_describe(card)} | {n_params / 1e6:.2f} M | {size / 1e6:.1f} MB | "
               f"{t * 1000:.0f} ms ({t / base:.2f}x) | {t_tta * 1000:.0f} ms |")
        if not args.no_dice:
            a, p = _dice(model, card, ids, vols, refs, tta=False)
            at, pt = _dice(model, card, ids, vols, refs, tta=True)
            row += f" {a:.4f} / {p:.4f} ({(a + p) / 2:.4f}) | {at:.4f} / {pt:.4f} ({(at + pt) / 2:.4f}) |"
            if args.largest_component:
                al, pl = _dice(model, card, ids, vols, refs, tta=False, post=largest_component)
                row += f" {al:.4f} / {pl:.4f} ({(al + pl) / 2:.4f}) |"
        print(row, flush=True)
        rows.append(row)
    header = "| model | architecture | parameters | weights | ms/case (vs first) | ms/case flip TTA |"
    if not args.no_dice:
        header += " val Dice ant / post (mean) | with flip TTA |"
        header += " largest component only |" if args.largest_component else ""
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
