"""ACDC from scratch with a fixed network and step count: which patch (and batch) learns more per step.

    .venv/bin/python bench/acdc_scratch_bench.py --n 25 --steps 800 --batch 8 [--patch 128,128] \
        [--width 16] [--depth 5] [--ctx 0] [--lr 1e-3] [--out DIR]

The exploration behind the planner's CPU patch rule (``unet_engine.planning.rules.start_patch``):
``--n`` training volumes and 10 held-out patients (both frames), drawn with a fixed seed
from ``../shared/data/cardiac_acdc``; a 2D/2.5D U-Net trained from scratch by the real
trainer (``fine_tune``) on whole slices (no ``--patch``) or on patches, then the held-out
mean Dice per label. Prints one JSON line. Skips cleanly when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cardiac_acdc"))
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", default=None, help="H,W (default: whole slices)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--augment", default="{}", help="AugmentConfig JSON")
    ap.add_argument("--holdout-patients", type=int, default=10)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()
    src = Path(a.data)
    if not (src / "imagesTr").is_dir():
        print(f"skipped: no ACDC data at {src}")
        return 0
    import numpy as np
    import torch

    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.inference.predict import predict_volume
    from unet_engine.io.volume_io import read_mask, read_volume
    from unet_engine.metrics import dice
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.config import TrainConfig
    from unet_engine.training.fine_tune import fine_tune

    torch.set_num_threads(1)
    files = sorted(p.name for p in (src / "imagesTr").glob("*.nii.gz"))
    patient = {f: re.search(r"patient\d+", f).group(0) for f in files}
    pats = sorted(set(patient.values()))
    rng = np.random.default_rng(0)
    held_patients = {pats[i] for i in rng.permutation(len(pats))[: a.holdout_patients]}
    hold = [f for f in files if patient[f] in held_patients]
    rest = [f for f in files if f not in hold]
    rest = [rest[i] for i in rng.permutation(len(rest))][: a.n]
    labels = {1: "RV", 2: "MYO", 3: "LV"}
    with tempfile.TemporaryDirectory(prefix="acdc-scratch-") as tmp:
        out = Path(a.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        ds = RetrainingDataset.create(out / "ds", labels, modality="MRI", val_fraction=0.0, exist_ok=True)
        have = {c.id for c in ds.cases()}
        for f in rest:
            if f.replace(".nii.gz", "") not in have:
                im = read_volume(src / "imagesTr" / f)
                ds.add_case(im, read_mask(src / "labelsTr" / f, im), case_id=f.replace(".nii.gz", ""))
        spec = {"dims": 2, "in_channels": 2 * a.ctx + 1, "base_width": a.width, "depth": a.depth, "context_slices": a.ctx}
        cfg = TrainConfig(max_steps=a.steps, steps_per_epoch=a.steps, batch_size=a.batch, lr=a.lr, warmup_steps=20,
                          patience=0, model_spec=spec, augment=json.loads(a.augment),
                          patch_size=[int(v) for v in a.patch.split(",")] if a.patch else None, device="cpu",
                          num_threads=1, checkpoint_every_steps=10**9, cache_cases=32, validate_at_start=False)
        reg = ModelRegistry(out / "reg")
        t = time.perf_counter()
        res = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="scratch"))
        train_s = time.perf_counter() - t
        model, card = reg.load(res.version, "cpu")
        per: dict[int, list[float]] = {k: [] for k in labels}
        for f in hold:
            im = read_volume(src / "imagesTr" / f)
            ref = read_mask(src / "labelsTr" / f, im)
            pred = run_generator(predict_volume(model, card, im, device="cpu")).labels
            for k in labels:
                per[k].append(dice(pred, ref, k))
    d = {labels[k]: float(np.mean(v)) for k, v in per.items()}
    print(json.dumps({"args": vars(a), "train_s": train_s, "s_per_step": train_s / a.steps, "dice": d,
                      "mean": float(np.mean(list(d.values())))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
