"""A first model from scratch on ACDC, planned for a time budget: held-out Dice and minutes kept.

    .venv/bin/python bench/acdc_first_model.py --cases 25 --minutes 20 --threads 1 \
        [--data ../shared/data/cardiac_acdc] [--holdout 20] [--val-fraction 0.2] [--seed 0] \
        [--set base_width=8 --set batch_size=4 ...] [--no-calibrate] [--out bench/loop_sim/acdc_first_model.json]

What ``segloop train --project NAME --minutes M`` will do for a new project, on the second
real task: the first ``--cases`` volumes of the loop-sim case order (the same seeded split as
``segloop loop-sim --group-pattern 'patient\\d+' --holdout 20``: the held-out patients are
never trained on) go into a retraining dataset; :func:`unet_engine.planning.plan_first_model`
fingerprints it, plans the network and measures its steps (calibration), then
:func:`unet_engine.training.fine_tune.fine_tune` trains the plan. Printed: the plan and why, the
calibration time, planned vs actual training minutes (the figure that says whether minutes
give a complete schedule: ``stopped`` must be ``completed``, not ``time-limit``), and the
held-out Dice per label (both-empty labels n/a). Skips cleanly when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELS = {1: "right ventricle", 2: "myocardium", 3: "left ventricle"}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cardiac_acdc"))
    ap.add_argument("--cases", type=int, default=25, help="training volumes (the loop-sim order's first N)")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=20, help="held-out volumes (whole patients)")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="the dataset's validation split, as in a project")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="plan change (Advanced)")
    ap.add_argument("--no-calibrate", action="store_true")
    ap.add_argument("--out", default=None, help="JSON of the figures")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)
    if not (data / "imagesTr").is_dir():
        print(f"skipped: no ACDC data at {data}")
        return 0
    import torch

    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.experiments.loop_sim import LoopSimConfig, LoopSimulation, _read
    from unet_engine.planning import plan_first_model
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.fine_tune import fine_tune

    torch.set_num_threads(args.threads)
    changes = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    with tempfile.TemporaryDirectory(prefix="acdc-first-") as tmp:
        cfg = LoopSimConfig(data=str(data), labels=LABELS, initial=args.cases, rounds=1, holdout=args.holdout,
                            seed=args.seed, group_pattern=r"patient\d+", modality="MR")
        sim = LoopSimulation(cfg, Path(tmp) / "sim")
        ds = RetrainingDataset.create(Path(tmp) / "ds", LABELS, modality="MRI", val_fraction=args.val_fraction)
        for case in sim.initial:
            image, label = _read(case)
            ds.add_case(image, label, case_id=case.id)
        t0 = time.perf_counter()
        plan = plan_first_model(ds, "MR", minutes=args.minutes, device="cpu", calibrate=not args.no_calibrate,
                                threads=args.threads, overrides=changes or None)
        plan_s = time.perf_counter() - t0
        print("\n".join(plan.summary_lines()))
        print(f"planning + calibration: {plan_s:.1f} s")
        reg = ModelRegistry(Path(tmp) / "registry")
        t1 = time.perf_counter()
        result = run_generator(fine_tune(plan.train_config(seed=args.seed), dataset=ds, registry=reg,
                                         from_version="scratch"))
        train_s = time.perf_counter() - t1
        model, card = reg.load(result.version)
        t2 = time.perf_counter()
        held = sim.score(model, card)
        eval_s = time.perf_counter() - t2
        n_train, n_val = len(ds.train_cases()), len(ds.val_cases())
    out = {"cases": args.cases, "train_cases": n_train, "val_cases": n_val,
           "holdout_cases": len(sim.holdout), "minutes": args.minutes, "threads": args.threads,
           "planned_steps": plan.max_steps, "seconds_per_step": plan.seconds_per_step,
           "step_time_source": plan.step_time_source, "steps": result.steps, "stopped": result.stopped,
           "plan_and_calibration_s": plan_s, "train_wall_min": train_s / 60.0,
           "train_over_budget": train_s / (args.minutes * 60.0), "holdout_dice": held.per_label,
           "holdout_mean_dice": held.mean, "holdout_voxels_beyond_tolerance": held.voxels_beyond_tolerance,
           "eval_s": eval_s, "plan": {k: v for k, v in plan.to_dict().items() if k != "fingerprint"},
           "plan_summary": plan.summary_lines(), "changes": changes}
    dice = ", ".join(f"{k} {v:.3f}" for k, v in held.per_label.items())
    print(f"trained {result.steps}/{plan.max_steps} steps ({result.stopped}) in {train_s / 60:.2f} min of a "
          f"{args.minutes:g}-min budget (x{out['train_over_budget']:.2f}); held-out Dice {dice}, mean {held.mean:.4f}; "
          f"{held.voxels_beyond_tolerance:.0f} voxels beyond 1 mm per case")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
