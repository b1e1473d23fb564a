"""``segloop eval --model ... --images DIR --labels DIR``: score a model on labelled scans.

``--project NAME`` scores the project's model, on ``--images``/``--labels`` or, without
them, on the project dataset's validation cases. A label absent from both prediction and
reference has no Dice: it prints ``n/a`` and no mean counts it.

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
from collections.abc import Callable
from typing import Any

import numpy as np

from unet_engine.cli.commands.predict import add_model_arguments, check_batch_size, resolve_model_arg, warn_modality
from unet_engine.cli.commands.progress import ProgressBar
from unet_engine.cli.commands.report import fmt_score
from unet_engine.devices import set_cpu_threads
from unet_engine.errors import SegLoopError
from unet_engine.inference.predict import predict_volume
from unet_engine.registry.resolver import load_model_for_inference
from unet_engine.io.checks import READ_SUFFIXES, full_suffix
from unet_engine.metrics import evaluate, json_safe, summarize
from unet_engine.progress import run_generator
from unet_engine.volume import Volume

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="score a model against reference labels (Dice, IoU, HD95)",
        description="Predict every scan in --images and compare with the label map of the same name in --labels.")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder of scans (with --project and without --images/--labels: its validation cases)")
    p.add_argument("--labels", default=None, metavar="DIR", help="folder of reference label maps (same names)")
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


#: a case to score: (name, loader returning the scan and its reference label map)
Case = tuple[str, Callable[[], tuple[Volume, np.ndarray]]]


def folder_cases(images: Path, labels: Path) -> list[Case]:
    from unet_engine.io.volume_io import read_mask, read_volume

    def loader(image_path: Path, label_path: Path) -> Callable[[], tuple[Volume, np.ndarray]]:
        def load() -> tuple[Volume, np.ndarray]:
            volume = read_volume(image_path)
            return volume, read_mask(label_path, like=volume)
        return load

    return [(case, loader(i, lab)) for case, i, lab in match_cases(images, labels)]


def project_cases(project: Any) -> list[Case]:
    """The validation cases of the project's dataset."""
    ds = project.dataset()
    ids = [c.id for c in ds.val_cases()]
    if not ids:
        raise SegLoopError(f"project {project.name!r} has no validation cases yet ({len(ds)} case(s) in all); add "
                           "cases, or pass --images DIR --labels DIR")

    def loader(cid: str) -> Callable[[], tuple[Volume, np.ndarray]]:
        def load() -> tuple[Volume, np.ndarray]:
            volume, label, _ = ds.load_case(cid)
            return volume, label
        return load

    return [(cid, loader(cid)) for cid in ids]


def run(args: argparse.Namespace) -> int:
    check_batch_size(args.batch_size)
    set_cpu_threads(args.threads)
    model_path, project = resolve_model_arg(args)
    if args.images is None and args.labels is None and project is not None:
        cases = project_cases(project)
    elif args.images is None or args.labels is None:
        raise SegLoopError("give --images DIR and --labels DIR (with --project NAME they may be left out: its "
                           "validation cases are scored)")
    else:
        cases = folder_cases(Path(args.images), Path(args.labels))
    model, card = load_model_for_inference(model_path, device=args.device)
    names = dict(project.labels) if project is not None else {k: v for k, v in card.labels.items() if k}
    if not names:
        names = {k: f"label {k}" for k in range(1, card.spec.num_classes)}
    per_case: dict[str, dict[str, Any]] = {}
    bar = ProgressBar("eval")
    for n, (case, load) in enumerate(cases):
        volume, reference = load()
        warn_modality("eval", volume, project, case)
        pred = run_generator(predict_volume(model, card, volume, tta=args.tta, device=args.device, batch_size=args.batch_size))
        per_case[case] = evaluate(pred.labels, reference, names, volume.spacing)
        bar.update((n + 1) / len(cases), case)
        if not args.json:
            print(f"{case}\t" + "\t".join(f"{name}={fmt_score(m['dice'])}" for name, m in per_case[case].items()))
    bar.close(f"{len(cases)} case(s)")
    mean = summarize(per_case.values())
    if args.json:
        out = {"model": str(model_path), "project": project.name if project is not None else None,
               "card": {"name": card.name, "version": card.version}, "cases": per_case, "mean": mean}
        json.dump(json_safe(out), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        na = any(m["dice"] is None for c in per_case.values() for m in c.values())
        print("mean\t" + "\t".join(f"{name}={fmt_score(m['dice'])}" for name, m in mean.items())
              + f"\t({len(cases)} cases{'; n/a: label absent from prediction and reference' if na else ''})")
    return 0
