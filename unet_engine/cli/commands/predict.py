"""``segloop predict --model PATH|default | --project NAME INPUT OUTPUT``: segment a scan headlessly.

With ``--project`` the project's model is used (its active version, else the bundled model
it started from); a project without a model is an error saying how to train one, and a
scan whose intensities contradict the project's modality gets a warning line on stderr.

Writes the label map on the scan's grid (same shape, spacing, origin, direction) and,
on request, the class probabilities (a C-channel image, or ``.npy``/``.npz`` holding
``[C, k, j, i]``) and the per-voxel uncertainty (normalised entropy 0..1; with ``--tta``
the flip disagreement is written beside it as ``<name>_disagreement``). Prints where it
wrote and the volume of each label.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from unet_engine.cli.commands.progress import ProgressBar
from unet_engine.cli.commands.targets import add_project_option, modality_problem, no_model_error, one_of, open_project
from unet_engine.devices import DEVICE_CHOICES, run_description, set_cpu_threads
from unet_engine.errors import SegLoopError
from unet_engine.inference.predict import Prediction, predict_volume
from unet_engine.registry.resolver import load_model_for_inference
from unet_engine.io.checks import full_suffix, memory_errors_named
from unet_engine.metrics import label_volume_ml
from unet_engine.progress import run_generator
from unet_engine.volume import Volume

if TYPE_CHECKING:
    from unet_engine.projects import Project

log = logging.getLogger(__name__)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``eval`` share."""
    p.add_argument("--model", default=None, metavar="PATH|default",
                   help="checkpoint folder (model.safetensors + card.json), or 'default' (the registry's active "
                        "model, else the bundled one; the default without --project)")
    add_project_option(p, "model (its active version, or the model it started from)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (slower; adds disagreement)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to run (default: auto = cuda > mps > cpu)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="slices/patches per forward pass (default: sized to memory)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all cores)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="segment a scan with a U-Net checkpoint",
        description="Segment INPUT (a scan file or DICOM folder) and write the label map to OUTPUT on the scan's grid "
                    "(.nii.gz, .nii, .nrrd, .seg.nrrd, .mha, .mhd).")
    p.add_argument("input", metavar="INPUT", help="scan file or DICOM folder")
    p.add_argument("output", metavar="OUTPUT", help="label map to write")
    add_model_arguments(p)
    p.add_argument("--probabilities", metavar="FILE", default=None,
                   help="also write class probabilities (C-channel image, or .npy/.npz with [C, k, j, i])")
    p.add_argument("--uncertainty", metavar="FILE", default=None, help="also write per-voxel uncertainty (0..1, float32)")
    p.set_defaults(func=run)


def check_batch_size(value: int | None) -> None:
    if value is not None and value < 1:
        raise SegLoopError(f"--batch-size must be at least 1, got {value}")


def resolve_model_arg(args: argparse.Namespace) -> tuple[str, Project | None]:
    """The checkpoint ``--model`` or ``--project`` names (exactly one of them; neither: 'default')."""
    one_of(args.project, args.model, "--model", required=False)
    if args.project is None:
        return args.model or "default", None
    project = open_project(args.project)
    path = project.model_path()
    if path is None:
        raise no_model_error(project)
    return str(path), project


def warn_modality(command: str, volume: Volume, project: Project | None, what: str) -> None:
    """A warning line on stderr when ``volume`` contradicts the project's modality."""
    problem = modality_problem(volume, project) if project is not None else None
    if problem:
        print(f"segloop {command}: warning: {what}: {problem}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from unet_engine.io.volume_io import read_volume, write_mask, write_volume

    check_batch_size(args.batch_size)
    set_cpu_threads(args.threads)
    model_path, project = resolve_model_arg(args)
    model, card = load_model_for_inference(model_path, device=args.device)
    volume = read_volume(args.input)
    warn_modality("predict", volume, project, args.input)
    bar = ProgressBar("predict")
    with memory_errors_named(args.input, "segmenting this scan", before=bar.end_line):
        pred = run_generator(
            predict_volume(model, card, volume, tta=args.tta, device=args.device, batch_size=args.batch_size),
            lambda p: bar.update(p.fraction, p.message),
        )
    bar.close(f"{pred.seconds:.1f}s on {run_description(pred.device, pred.precision, pred.memory)}")
    out = write_mask(pred.labels, volume, args.output, labels=card.labels)
    if project is not None:
        print(f"model: project {project.name!r}, {Path(model_path).name}")
    print(f"wrote {out}")
    if args.probabilities:
        print(f"wrote {write_probabilities(pred, volume, Path(args.probabilities), write_volume)}")
    if args.uncertainty:
        unc_path = Path(args.uncertainty)
        print(f"wrote {write_volume(volume.with_array(pred.uncertainty, modality='unknown'), unc_path)}")
        if pred.disagreement is not None:
            suffix = full_suffix(unc_path)
            dis_path = unc_path.with_name(unc_path.name[: len(unc_path.name) - len(suffix)] + "_disagreement" + suffix)
            print(f"wrote {write_volume(volume.with_array(pred.disagreement, modality='unknown'), dis_path)}")
    for value, name in sorted(card.labels.items()):
        if value:
            print(f"  {value} {name}: {label_volume_ml(pred.labels, volume.spacing, value):.2f} ml")
    return 0


def write_probabilities(pred: Prediction, volume: Volume, path: Path, write_volume: Callable[..., Path]) -> Path:
    """``.npy`` / ``.npz``: float16 ``[C, k, j, i]``; an image format: float32 channels-last."""
    if path.suffix == ".npy":
        np.save(path, pred.probabilities)
        return path
    if path.suffix == ".npz":
        np.savez_compressed(path, probabilities=pred.probabilities)
        return path
    channels_last = np.ascontiguousarray(np.moveaxis(pred.probabilities, 0, -1), dtype=np.float32)
    return write_volume(Volume(channels_last, spacing=volume.spacing, origin=volume.origin,
                               direction=volume.direction, modality="unknown"), path)
