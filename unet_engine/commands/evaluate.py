"""``segloop eval --model ... --images DIR --labels DIR``: score a model on labelled scans.

Images and reference labels are matched by case name (file name without its image
suffix; an nnU-Net channel suffix ``_0000`` on the image is ignored). Prints Dice per
label for every case and the mean over cases; ``--json`` prints every metric (Dice,
IoU, HD95 in mm, volumes in ml) as one JSON object instead (non-finite HD95 as null).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from unet_engine.commands.predict import add_model_arguments, check_batch_size
from unet_engine.commands.progress import ProgressBar
from unet_engine.devices import set_cpu_threads
from unet_engine.errors import SegLoopError
from unet_engine.inference import load_model_for_inference, predict_volume
from unet_engine.io_checks import READ_SUFFIXES, full_suffix
from unet_engine.metrics import evaluate, json_safe, summarize
from unet_engine.progress import run_generator

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="score a model against reference labels (Dice, IoU, HD95)",
        description="Predict every scan in --images and compare with the label map of the same name in --labels.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of scans")
    p.add_argument("--labels", required=True, metavar="DIR", help="folder of reference label maps (same names)")
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.set_defaults(func=run)


def case_name(path: Path) -> str:
    """Case id of an image or label file: name without suffix and without an nnU-Net ``_0000``."""
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return re.sub(r"_\d{4}$", "", stem)


def _scans(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise SegLoopError("is not a folder", folder)
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and full_suffix(p) in READ_SUFFIXES:
            out.setdefault(case_name(p), p)
        elif p.is_dir():  # a DICOM series folder
            out.setdefault(p.name, p)
    return out


def match_cases(images: Path, labels: Path) -> list[tuple[str, Path, Path]]:
    """``(case, image, label)`` for every case present in both folders."""
    imgs, labs = _scans(images), _scans(labels)
    common = sorted(set(imgs) & set(labs))
    missing = sorted(set(imgs) - set(labs))
    if missing:
        log.warning("%d image(s) without a label map are skipped (e.g. %s)", len(missing), missing[0])
    if not common:
        raise SegLoopError(f"no image in {images} has a label map of the same name in {labels}", images)
    return [(c, imgs[c], labs[c]) for c in common]


def run(args: argparse.Namespace) -> int:
    from unet_engine.io import read_mask, read_volume

    check_batch_size(args.batch_size)
    set_cpu_threads(args.threads)
    cases = match_cases(Path(args.images), Path(args.labels))
    model, card = load_model_for_inference(args.model, device=args.device)
    names = {k: v for k, v in card.labels.items() if k}
    if not names:
        names = {k: f"label {k}" for k in range(1, card.spec.num_classes)}
    per_case: dict[str, dict[str, Any]] = {}
    bar = ProgressBar("eval")
    for n, (case, image_path, label_path) in enumerate(cases):
        volume = read_volume(image_path)
        reference = read_mask(label_path, like=volume)
        pred = run_generator(predict_volume(model, card, volume, tta=args.tta, device=args.device, batch_size=args.batch_size))
        per_case[case] = evaluate(pred.labels, reference, names, volume.spacing)
        bar.update((n + 1) / len(cases), case)
        if not args.json:
            print(f"{case}\t" + "\t".join(f"{name}={m['dice']:.4f}" for name, m in per_case[case].items()))
    bar.close(f"{len(cases)} case(s)")
    mean = summarize(per_case.values())
    if args.json:
        out = {"model": str(args.model), "card": {"name": card.name, "version": card.version},
               "cases": per_case, "mean": mean}
        json.dump(json_safe(out), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("mean\t" + "\t".join(f"{name}={m['dice']:.4f}" for name, m in mean.items()) + f"\t({len(cases)} cases)")
    return 0
