"""Export a registry version trained by `segloop train` as the bundled default model.

    .venv/bin/python bench/export_default_model.py --registry REG --version latest \
        --command "<the segloop train command>" [--metrics extra_metrics.json]

Writes ``unet_engine/resources/models/default/{model.safetensors,card.json}`` (weights and card only:
no optimizer or training state). The card gets: version ``default-1``, label names and
colours, the training summary with ``training.dataset.cases = [{id, hash, split}]`` copied
from the registry version (``hash`` = :func:`unet_engine.data.case_identity.content_hash`, so
replay knows what the bundled model saw when it is fine-tuned), the validation case ids,
the command that made it, and the metrics (val Dice per label from the trainer, plus any
extra measured metrics such as TTA Dice and CPU inference time). ``TRAINING.md`` is
written separately (by hand) after the export, because saving swaps the whole folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_engine.model.checkpoint import ModelCard, save_checkpoint  # noqa: E402
from unet_engine.registry.versions import ModelRegistry  # noqa: E402

COLOURS = {1: [230, 25, 75], 2: [60, 180, 75]}  # anterior red, posterior green


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--version", default="latest")
    ap.add_argument("--out", default=str(ROOT / "unet_engine" / "resources" / "models" / "default"))
    ap.add_argument("--command", required=True, help="the segloop train command that made the version")
    ap.add_argument("--metrics", default=None, help="JSON file with extra metrics merged into card.metrics")
    ap.add_argument("--name", default="SegLoop default: hippocampus anterior/posterior (2D U-Net)")
    ap.add_argument("--card-version", default="default-1")
    ap.add_argument("--notes", default="2D U-Net (slices along the scan's k axis), trained with SegLoop's own trainer "
                    "on the MSD hippocampus training split; see TRAINING.md next to this card.",
                    help="free text for card.notes (say how the version was trained)")
    args = ap.parse_args()

    reg = ModelRegistry(args.registry)
    info = reg.get(args.version)
    model, card = reg.load(info.version, "cpu")
    cases = list(info.dataset.get("cases") or [])
    if not cases or not all(c.get("hash") for c in cases):
        raise SystemExit("the registry version records no dataset cases with hashes")
    new = ModelCard.from_dict(card.to_dict())
    new.version, new.parent, new.name = args.card_version, None, args.name
    new.labels = {0: "background", 1: "anterior", 2: "posterior"}
    new.colours = dict(COLOURS)
    training = dict(new.training)
    training["dataset"] = {**dict(training.get("dataset") or {}), "cases": cases,
                           "val_case_ids": [c["id"] for c in cases if c["split"] == "val"],
                           "source": "Medical Segmentation Decathlon Task04_Hippocampus (CC-BY-SA 4.0)"}
    training["command"] = args.command
    training["registry_version"] = info.version
    training["curves"] = info.curves
    new.training = training
    metrics = dict(info.metrics)
    if args.metrics:
        metrics.update(json.loads(Path(args.metrics).read_text()))
    new.metrics = metrics
    new.notes = args.notes
    out = save_checkpoint(model.cpu(), new, args.out)
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters())} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
