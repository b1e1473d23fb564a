"""``segloop dataset create|add|remove|list|export-nnunet|import-msd``: the retraining dataset."""

from __future__ import annotations

import argparse
import json
import sys

from unet_engine.errors import SegLoopError


def parse_labels(text: str) -> dict[int, str]:
    """``"1=anterior,2=posterior"`` -> ``{1: "anterior", 2: "posterior"}``."""
    out: dict[int, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise SegLoopError(f"labels must look like 1=anterior,2=posterior (got {part!r})")
        out[int(value)] = name.strip()
    if not out:
        raise SegLoopError("no labels given (e.g. --labels 1=anterior,2=posterior)")
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dataset", help="manage a retraining dataset (corrected cases)",
                              description="Create and edit a retraining dataset folder (MSD layout + provenance).")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True

    c = sub.add_parser("create", help="create an empty dataset")
    c.add_argument("folder")
    c.add_argument("--labels", required=True, help="label values and names, e.g. 1=anterior,2=posterior")
    c.add_argument("--name", default=None)
    c.add_argument("--modality", default="MRI", help="MRI, CT, ... (used by the nnU-Net export)")
    c.add_argument("--val-fraction", type=float, default=0.2, help="share of cases kept for validation")
    c.set_defaults(func=run, action="create")

    a = sub.add_parser("add", help="add a corrected case")
    a.add_argument("folder")
    a.add_argument("--image", required=True, help="the scan (any format SegLoop reads, DICOM folder included)")
    a.add_argument("--label", required=True, help="the corrected label map, on the scan's grid")
    a.add_argument("--edits", default=None, help="mask of the voxels the reviewer changed (optional)")
    a.add_argument("--model-version", default=None, help="the model whose prediction was corrected")
    a.add_argument("--reviewer", default=None)
    a.add_argument("--replace", action="store_true", help="replace the label if the scan is already in the dataset")
    a.add_argument("--no-source-path", action="store_true", help="do not record where the scan came from")
    a.set_defaults(func=run, action="add")

    r = sub.add_parser("remove", help="remove a case")
    r.add_argument("folder")
    r.add_argument("case_id")
    r.set_defaults(func=run, action="remove")

    ls = sub.add_parser("list", help="list the cases")
    ls.add_argument("folder")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run, action="list")

    e = sub.add_parser("export-nnunet", help="export as an nnU-Net v2 raw dataset")
    e.add_argument("folder")
    e.add_argument("out", help="nnUNet_raw folder to write DatasetNNN_Name into")
    e.add_argument("--id", type=int, default=501, dest="dataset_id")
    e.add_argument("--name", default=None)
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=run, action="export-nnunet")

    m = sub.add_parser("import-msd", help="build a dataset from an MSD task folder (imagesTr + labelsTr)")
    m.add_argument("source")
    m.add_argument("folder")
    m.add_argument("--labels", default=None, help="needed when the source has no dataset.json")
    m.add_argument("--limit", type=int, default=None, help="import only the first N cases")
    m.add_argument("--modality", default=None)
    m.set_defaults(func=run, action="import-msd")


def run(args: argparse.Namespace) -> int:
    from unet_engine.dataset import RetrainingDataset, import_msd

    action = args.action
    if action == "create":
        ds = RetrainingDataset.create(args.folder, parse_labels(args.labels), name=args.name, modality=args.modality,
                                      val_fraction=args.val_fraction)
        print(f"created dataset {ds.folder} with labels {ds.labels}")
        return 0
    if action == "import-msd":
        labels = parse_labels(args.labels) if args.labels else None
        ds = import_msd(args.source, args.folder, labels=labels, limit=args.limit, modality=args.modality)
        print(f"{ds.folder}: {len(ds.train_cases())} train + {len(ds.val_cases())} val cases")
        return 0
    ds = RetrainingDataset(args.folder)
    if action == "add":
        from unet_engine.io import read_mask, read_volume

        image = read_volume(args.image)
        label = read_mask(args.label, image)
        edits = read_mask(args.edits, image) if args.edits else None
        cid = ds.add_case(image, label, edited=edits, model_version=args.model_version, reviewer=args.reviewer,
                          source_path=None if args.no_source_path else args.image, replace=args.replace)
        print(f"added {cid} ({ds.get(cid).split})")
        return 0
    if action == "remove":
        ds.remove_case(args.case_id)
        print(f"removed {args.case_id}")
        return 0
    if action == "list":
        cases = ds.cases()
        if args.json:
            json.dump({"folder": str(ds.folder), "labels": {str(k): v for k, v in ds.labels.items()},
                       "cases": [c.to_dict() for c in cases]}, sys.stdout, indent=2)
            print()
            return 0
        print(f"{ds.folder}: {len(cases)} cases ({len(ds.train_cases())} train, {len(ds.val_cases())} val), "
              f"labels {', '.join(f'{k}={v}' for k, v in ds.labels.items())}")
        for c in cases:
            print(f"  {c.id:<28} {c.split:<5} {'x'.join(map(str, c.shape)):<12} model={c.model_version or '-':<8} "
                  f"reviewer={c.reviewer or '-':<10} added={c.added}")
        return 0
    if action == "export-nnunet":
        from unet_engine.nnunet_export import export_nnunet

        out = export_nnunet(ds, args.out, dataset_id=args.dataset_id, name=args.name, overwrite=args.overwrite)
        print(f"exported {len(ds)} cases to {out}")
        return 0
    raise SegLoopError(f"unknown dataset action {action!r}")
