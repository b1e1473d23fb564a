"""Old vs new inference on real data: labels and Dice per label, same model and weights.

*Old* is ``unet_engine`` at a git revision (default ``HEAD``, i.e. the committed code before
an uncommitted change), exported with ``git archive`` and run in a subprocess; *new* is the
working tree, in this process. Both run the bundled default model (3D U-Net) on the CPU:

* every validation case of its card (``../shared/data/hippocampus``) and the fixtures in
  ``tests/data/hippocampus``, through ``predict_volume``, without and with flip TTA;
* the 36-case mosaic of ``bench/hippo_mosaic.py`` through the 3D sliding-window core at the
  old configuration (training patch, overlap 0.5), to check the blending itself.

Prints voxels equal and Dice per label (mean over cases) for old and new, and the largest
per-label Dice difference; exits 1 when a Dice moved by more than ``--tol`` (1e-3).

Run: ``nice -n 15 .venv/bin/python bench/inference_equivalence.py [--rev HEAD] [--threads 1]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from io import BytesIO
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hippo_mosaic import FIXTURES, build_mosaic, load_cases, mosaic_dice, val_case_ids  # noqa: E402
from unet_engine.model.checkpoint import load_checkpoint  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.inference.runner import Runner, patch_size, run_patches  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.inference.tta import flip_axes_for  # noqa: E402

OLD_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch
    old, model_dir, cases_file, mosaic_file, out_file, threads = sys.argv[1:7]
    sys.path.insert(0, old)
    torch.set_num_threads(int(threads))
    from unet_engine.model.checkpoint import load_checkpoint
    from unet_engine.inference.predict import predict_volume
    from unet_engine.inference.runner import Runner, run_patches
    from unet_engine.io.volume_io import read_volume
    from unet_engine.progress import run_generator
    from unet_engine.inference.tta import flip_axes_for
    assert sys.modules["unet_engine"].__file__.startswith(old), "the old package must be the one imported"
    model, card = load_checkpoint(model_dir, "cpu")
    out = {}
    for line in open(cases_file).read().split():
        cid, path = line.split("=", 1)
        vol = read_volume(path)
        for tta in (False, True):
            out[f"{cid}/{int(tta)}"] = run_generator(predict_volume(model, card, vol, device="cpu", tta=tta)).labels
    image = np.load(mosaic_file)
    runner = Runner(model, torch.device("cpu"), 3, 1, False, flip_axes_for(card))
    out["mosaic"] = run_generator(run_patches(runner, image, card, np.float32, None)).labels
    np.savez_compressed(out_file, **out)
    """
)


def export_old(rev: str, into: Path) -> Path:
    """``unet_engine`` at ``rev`` extracted under ``into``; returns ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "unet_engine"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="git revision of the old engine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = BUNDLED_MODELS / "default"
    model, card = load_checkpoint(model_dir, "cpu")
    val = load_cases(val_case_ids(card))
    fixture_ids = sorted(p.name.removesuffix(".nii.gz") for p in (FIXTURES / "imagesTr").glob("*.nii.gz"))
    fixtures = load_cases(fixture_ids, FIXTURES)
    cases = {f"val:{c.id}": c for c in val} | {f"fixture:{c.id}": c for c in fixtures}
    paths = {k: (FIXTURES if k.startswith("fixture") else ROOT.parent / "shared/data/hippocampus") / "imagesTr" / f"{c.id}.nii.gz"
             for k, c in cases.items()}
    mosaic = build_mosaic(val, card)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        export_old(args.rev, t / "old")
        (t / "cases.txt").write_text("\n".join(f"{k}={p}" for k, p in paths.items()))
        np.save(t / "mosaic.npy", mosaic.image)
        subprocess.run([sys.executable, "-c", OLD_SCRIPT, str(t / "old"), str(model_dir), str(t / "cases.txt"),
                        str(t / "mosaic.npy"), str(t / "old.npz"), str(args.threads)], check=True)
        old = dict(np.load(t / "old.npz"))
    worst = 0.0
    print(f"old = unet_engine at {args.rev}, new = working tree; bundled model {card.version}; {args.threads} thread(s)\n")
    print("| set | TTA | cases | voxels equal | Dice ant old / new | Dice post old / new | max abs dDice |")
    print("|---|---|---|---|---|---|---|")
    for group in ("val", "fixture"):
        keys = [k for k in cases if k.startswith(group)]
        for tta in (False, True):
            new = {k: run_generator(predict_volume(model, card, cases[k].volume, device="cpu", tta=tta)).labels for k in keys}
            equal = sum(int((new[k] == old[f"{k}/{int(tta)}"]).sum()) for k in keys) / sum(new[k].size for k in keys)
            d = {(w, lab): np.mean([dice(src[k] if w == "new" else src[f"{k}/{int(tta)}"], cases[k].label, lab) for k in keys])
                 for w, src in (("old", old), ("new", new)) for lab in (1, 2)}
            delta = max(abs(d["old", lab] - d["new", lab]) for lab in (1, 2))
            worst = max(worst, delta)
            print(f"| {group} | {'flip' if tta else 'no'} | {len(keys)} | {equal * 100:.4f} % | "
                  f"{d['old', 1]:.4f} / {d['new', 1]:.4f} | "
                  f"{d['old', 2]:.4f} / {d['new', 2]:.4f} | {delta:.1e} |", flush=True)
    runner = Runner(model, torch.device("cpu"), 3, 1, False, flip_axes_for(card))
    train = patch_size(card, mosaic.image.shape)
    new_mosaic = run_generator(run_patches(runner, mosaic.image, None, card, None, overlap=0.5, window=train)).labels.numpy()
    dn, do = mosaic_dice(new_mosaic, mosaic), mosaic_dice(old["mosaic"], mosaic)
    delta = max(abs(dn[lab] - do[lab]) for lab in (1, 2))
    worst = max(worst, delta)
    equal = float((new_mosaic == old["mosaic"]).mean())
    print(f"| mosaic {'x'.join(map(str, mosaic.image.shape))}, window {'x'.join(map(str, train))}, overlap 0.5 | no | 36 | "
          f"{equal * 100:.4f} % | {do[1]:.4f} / {dn[1]:.4f} | {do[2]:.4f} / {dn[2]:.4f} | {delta:.1e} |")
    print(f"\nlargest per-label Dice change: {worst:.1e} (tolerance {args.tol:.0e})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
