"""A new structure from nothing to a fine-tuned model, through the ``segloop`` CLI, on ACDC.

Runs the real commands a user types, in a temporary ``SEGLOOP_HOME``, on the second real
task (``../shared/data/cardiac_acdc``: cine MRI, right ventricle / myocardium / left
ventricle; read in place, never copied into the repository):

1. ``segloop project create "ACDC heart" --modality MR --labels ...``
2. ``segloop dataset add --project`` for the first N patients' end-diastole volumes
   (the reference label stands in for the user's hand-drawn mask)
3. ``segloop train --project ... --minutes M``: the first model is planned from the
   dataset's fingerprint (printed) and trained
4. ``segloop predict --project`` on a new patient; Dice and the beyond-1-mm effort
   against the reference; the corrected case is added; ``segloop train --project
   --minutes M2 --promote`` fine-tunes; the next new patient is predicted again
5. ``segloop eval --project`` on held-out patients, before and after the fine-tune

Prints every command with its wall time and a JSON summary at the end::

    python bench/acdc_cli_walkthrough.py --first 5 --minutes 10 --finetune-minutes 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACDC = ROOT.parent / "shared" / "data" / "cardiac_acdc"
PROJECT = "ACDC heart"
LABELS = "1=right ventricle,2=myocardium,3=left ventricle"
NAMES = {1: "right ventricle", 2: "myocardium", 3: "left ventricle"}


def segloop(*args: str, env: dict[str, str], echo: bool = True) -> tuple[str, float]:
    """Run ``segloop ARGS``; returns stdout and seconds (stops the walkthrough on failure)."""
    cmd = [sys.executable, "-m", "desktop_app.launcher", *args]
    print("$ segloop " + " ".join(f"'{a}'" if " " in a else a for a in args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    out = proc.stdout.strip()
    if out and echo:
        print("  " + out.replace("\n", "\n  "))
    print(f"  [{dt:.1f} s, exit {proc.returncode}]", flush=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {proc.stderr.strip()}")
    return proc.stdout, dt


def scores(pred_path: Path, ref_path: Path) -> dict[str, float]:
    """Dice per label and the wrong voxels beyond 1 mm of the prediction against the reference."""
    from unet_engine.io.volume_io import read_mask, read_volume
    from unet_engine.metrics import dice_or_none, voxels_beyond_tolerance

    ref_vol = read_volume(ref_path)
    ref = np.asarray(ref_vol.array)
    pred = np.asarray(read_mask(pred_path, ref_vol))
    out = {NAMES[k]: dice_or_none(pred, ref, k) for k in NAMES}
    out["mean"] = float(np.mean([v for k, v in out.items() if v is not None]))
    out["voxels_wrong"] = int(np.count_nonzero(pred != ref))
    out["voxels_beyond_1mm"] = voxels_beyond_tolerance(pred, ref, ref_vol.spacing, 1.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=int, default=5, help="patients whose volumes start the project")
    ap.add_argument("--minutes", type=float, default=10.0, help="time budget of the first model")
    ap.add_argument("--finetune-minutes", type=float, default=4.0)
    ap.add_argument("--holdout", type=int, default=5, help="held-out patients scored with eval")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the JSON summary here too")
    args = ap.parse_args()
    if not (ACDC / "imagesTr").is_dir():
        print(f"ACDC not found at {ACDC}; skipped")
        return 0
    patients = sorted({p.name.split("_")[0] for p in (ACDC / "imagesTr").glob("patient*_frame01.nii.gz")})
    start, new = patients[: args.first], patients[args.first: args.first + 2]
    held = patients[-args.holdout:]
    work = Path(tempfile.mkdtemp(prefix="acdc_cli_"))
    env = dict(os.environ, SEGLOOP_HOME=str(work / "home"), OMP_NUM_THREADS=str(args.threads))
    img = lambda p: str(ACDC / "imagesTr" / f"{p}_frame01.nii.gz")  # noqa: E731
    lab = lambda p: str(ACDC / "labelsTr" / f"{p}_frame01.nii.gz")  # noqa: E731
    held_dir = work / "held"
    for sub in ("images", "labels"):
        (held_dir / sub).mkdir(parents=True)
    for p in held:  # eval matches images and labels by file name: link them, copy nothing
        (held_dir / "images" / f"{p}.nii.gz").symlink_to(img(p))
        (held_dir / "labels" / f"{p}.nii.gz").symlink_to(lab(p))
    summary: dict = {"first_patients": start, "new_patients": new, "held_out": held, "threads": args.threads,
                     "minutes": args.minutes, "finetune_minutes": args.finetune_minutes, "seconds": {}}
    t_all = time.perf_counter()
    segloop("project", "create", PROJECT, "--modality", "MR", "--labels", LABELS, env=env)
    for p in start:
        segloop("dataset", "add", "--project", PROJECT, "--image", img(p), "--label", lab(p), env=env)
    out, summary["seconds"]["first_model"] = segloop("train", "--project", PROJECT, "--minutes", str(args.minutes),
                                                     "--threads", str(args.threads), env=env)
    summary["plan"] = [line.strip() for line in out.splitlines() if line.startswith("  ")]

    def eval_held(tag: str) -> None:
        out, dt = segloop("eval", "--project", PROJECT, "--images", str(held_dir / "images"), "--labels",
                          str(held_dir / "labels"), "--json", "--threads", str(args.threads), env=env, echo=False)
        mean = json.loads(out)["mean"]
        summary[f"held_out_{tag}"] = {k: v["dice"] for k, v in mean.items()}
        print(f"  held-out mean Dice: {summary[f'held_out_{tag}']}")
        summary["seconds"][f"eval_{tag}"] = dt

    eval_held("first_model")
    pred = work / "pred_new1.nii.gz"
    _, summary["seconds"]["predict"] = segloop("predict", "--project", PROJECT, img(new[0]), str(pred),
                                               "--threads", str(args.threads), env=env)
    summary["new_case_first_model"] = scores(pred, Path(lab(new[0])))
    segloop("dataset", "add", "--project", PROJECT, "--image", img(new[0]), "--label", lab(new[0]), env=env)
    _, summary["seconds"]["fine_tune"] = segloop("train", "--project", PROJECT, "--minutes",
                                                 str(args.finetune_minutes), "--threads", str(args.threads),
                                                 "--promote", env=env)
    pred2 = work / "pred_new2.nii.gz"
    segloop("predict", "--project", PROJECT, img(new[1]), str(pred2), "--threads", str(args.threads), env=env)
    summary["next_case_after_fine_tune"] = scores(pred2, Path(lab(new[1])))
    eval_held("after_fine_tune")
    segloop("project", "show", PROJECT, env=env)
    summary["seconds"]["total"] = time.perf_counter() - t_all
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
