"""``segloop dataset create|add|remove|list|export-nnunet|export-seg|import-msd``: the retraining dataset.

Every action but ``create`` works on a dataset folder or on a project's dataset
(``--project NAME``). With a project, a label map holding values the project lacks is
refused (never remapped) with the ``project add-labels`` command that adds them, and a
scan whose intensities contradict the project's modality is refused unless
``--allow-modality-mismatch``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unet_engine.cli.commands.targets import add_project_option, modality_problem, one_of, open_project, quote
from unet_engine.errors import ProjectError, SegLoopError


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
                              description="Create and edit a retraining dataset: a folder (MSD layout + provenance), "
                                          "or a project's dataset with --project NAME.")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True

    c = sub.add_parser("create", help="create an empty dataset folder (a project has its own: segloop project create)")
    c.add_argument("folder")
    c.add_argument("--labels", required=True, help="label values and names, e.g. 1=anterior,2=posterior")
    c.add_argument("--name", default=None)
    c.add_argument("--modality", default="MRI", help="MRI, CT, ... (used by the nnU-Net export)")
    c.add_argument("--val-fraction", type=float, default=0.2, help="share of cases kept for validation")
    c.set_defaults(func=run, action="create")

    a = sub.add_parser("add", help="add a corrected case")
    a.add_argument("folder", nargs="?", default=None, help="dataset folder (or --project NAME)")
    add_project_option(a, "dataset")
    a.add_argument("--image", required=True, help="the scan (any format SegLoop reads, DICOM folder included)")
    a.add_argument("--label", required=True, help="the corrected label map, on the scan's grid")
    a.add_argument("--edits", default=None, help="mask of the voxels the reviewer changed (optional)")
    a.add_argument("--model-version", default=None, help="the model whose prediction was corrected")
    a.add_argument("--reviewer", default=None)
    a.add_argument("--replace", action="store_true", help="replace the label if the scan is already in the dataset")
    a.add_argument("--no-source-path", action="store_true", help="do not record where the scan came from")
    a.add_argument("--allow-modality-mismatch", action="store_true",
                   help="add a scan whose intensities contradict the project's modality")
    a.set_defaults(func=run, action="add")

    r = sub.add_parser("remove", help="remove a case")
    r.add_argument("folder", nargs="?", default=None, help="dataset folder (or --project NAME)")
    r.add_argument("case_id")
    add_project_option(r, "dataset")
    r.set_defaults(func=run, action="remove")

    ls = sub.add_parser("list", help="list the cases")
    ls.add_argument("folder", nargs="?", default=None, help="dataset folder (or --project NAME)")
    add_project_option(ls, "dataset")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run, action="list")

    e = sub.add_parser("export-nnunet", help="export as an nnU-Net v2 raw dataset")
    e.add_argument("folder", nargs="?", default=None, help="dataset folder (or --project NAME)")
    e.add_argument("out", help="nnUNet_raw folder to write DatasetNNN_Name into")
    add_project_option(e, "dataset")
    e.add_argument("--id", type=int, default=501, dest="dataset_id")
    e.add_argument("--name", default=None)
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=run, action="export-nnunet")

    s = sub.add_parser("export-seg", help="export each case whose scan came from DICOM as a DICOM SEG",
                       description="Write OUT/<case>.dcm, a DICOM SEG on the case's source DICOM series, for each "
                                   "case whose source series still exists on exactly the dataset image's grid "
                                   "(never resampled); other cases are listed as skipped with the reason.")
    s.add_argument("folder", nargs="?", default=None, help="dataset folder (or --project NAME)")
    s.add_argument("out", help="folder to write the DICOM SEG files into (outside the source series folders)")
    add_project_option(s, "dataset")
    s.set_defaults(func=run, action="export-seg")

    m = sub.add_parser("import-msd", help="add the cases of an MSD task folder (imagesTr + labelsTr)")
    m.add_argument("source")
    m.add_argument("folder", nargs="?", default=None, help="dataset folder, created if needed (or --project NAME)")
    add_project_option(m, "dataset")
    m.add_argument("--labels", default=None, help="needed when the source has no dataset.json")
    m.add_argument("--limit", type=int, default=None, help="import only the first N cases")
    m.add_argument("--modality", default=None)
    m.add_argument("--allow-modality-mismatch", action="store_true",
                   help="import scans whose intensities contradict the project's modality")
    m.set_defaults(func=run, action="import-msd")


def run(args: argparse.Namespace) -> int:
    from unet_engine.data.dataset import RetrainingDataset

    action = args.action
    if action == "create":
        ds = RetrainingDataset.create(args.folder, parse_labels(args.labels), name=args.name, modality=args.modality,
                                      val_fraction=args.val_fraction)
        print(f"created dataset {ds.folder} with labels {ds.labels}")
        return 0
    one_of(args.project, args.folder, "a dataset folder")
    project = open_project(args.project) if args.project is not None else None
    if action == "import-msd":
        return _import_msd(args, project)
    ds = project.dataset() if project is not None else RetrainingDataset(args.folder)
    if action == "add":
        return _add(args, ds, project)
    if action == "remove":
        ds.remove_case(args.case_id)
        print(f"removed {args.case_id}")
        return 0
    if action == "list":
        return _list(args, ds, project)
    if action == "export-nnunet":
        from unet_engine.data.nnunet_export import export_nnunet

        out = export_nnunet(ds, args.out, dataset_id=args.dataset_id, name=args.name, overwrite=args.overwrite)
        print(f"exported {len(ds)} cases to {out}")
        return 0
    if action == "export-seg":
        return _export_seg(args, ds, project)
    raise SegLoopError(f"unknown dataset action {action!r}")


def unknown_labels_error(project: Any, values: list[int], what: str) -> ProjectError:
    """A mask with values the project lacks: name them and the command that adds them."""
    known = ", ".join(f"{k}={v}" for k, v in project.labels.items())
    example = ",".join(f"{v}=NAME" for v in values)
    return ProjectError(f"{what} has label value(s) {values} that project {project.name!r} lacks (its labels: {known}); "
                        f"nothing was added. Add them first: segloop project add-labels {quote(project.name)} "
                        f"--labels \"{example}\"")


def _add(args: argparse.Namespace, ds: Any, project: Any) -> int:
    from unet_engine.io.volume_io import read_mask, read_volume

    image = read_volume(args.image)
    label = read_mask(args.label, image)
    if project is not None:
        unknown = project.unknown_values(np.unique(label))
        if unknown:
            raise unknown_labels_error(project, unknown, f"the label map {args.label}")
        problem = modality_problem(image, project)
        if problem and not args.allow_modality_mismatch:
            raise ProjectError(f"{args.image}: {problem}; not added (pass --allow-modality-mismatch to add it anyway)")
    edits = read_mask(args.edits, image) if args.edits else None
    cid = ds.add_case(image, label, edited=edits, model_version=args.model_version, reviewer=args.reviewer,
                      source_path=None if args.no_source_path else str(Path(args.image).expanduser().resolve()),
                      replace=args.replace)
    where = f"project {project.name!r}" if project is not None else str(ds.folder)
    print(f"added {cid} ({ds.get(cid).split}) to {where}")
    return 0


def _list(args: argparse.Namespace, ds: Any, project: Any) -> int:
    cases = ds.cases()
    if args.json:
        json.dump({"folder": str(ds.folder), "project": project.name if project is not None else None,
                   "labels": {str(k): v for k, v in ds.labels.items()}, "cases": [c.to_dict() for c in cases]},
                  sys.stdout, indent=2)
        print()
        return 0
    head = f"project {project.name!r}" if project is not None else str(ds.folder)
    print(f"{head}: {len(cases)} cases ({len(ds.train_cases())} train, {len(ds.val_cases())} val), "
          f"labels {', '.join(f'{k}={v}' for k, v in ds.labels.items())}")
    for c in cases:
        print(f"  {c.id:<28} {c.split:<5} {'x'.join(map(str, c.shape)):<12} model={c.model_version or '-':<8} "
              f"reviewer={c.reviewer or '-':<10} added={c.added}")
    return 0


def _export_seg(args: argparse.Namespace, ds: Any, project: Any) -> int:
    from unet_engine.data.export_seg import export_dicom_seg

    report = export_dicom_seg(ds, args.out, colours=project.colours if project is not None else None)
    for c in report.cases:
        if c.written:
            print(f"  {c.case_id}: written {c.path}" + "".join(f" (warning: {w})" for w in c.warnings))
        else:
            print(f"  {c.case_id}: skipped, {c.status}: {c.reason}")
    counts = report.counts()
    skipped = ", ".join(f"{n} {kind}" for kind, n in counts.items() if kind != "written")
    print(f"{len(report.written)} DICOM SEG written to {report.out_folder}, {len(report.skipped)} skipped"
          + (f" ({skipped})" if skipped else ""))
    if report.written:
        return 0
    if not report.any_dicom:
        print("no case of this dataset came from DICOM: nothing to export as DICOM SEG")
        return 0
    print("segloop dataset: error: no DICOM SEG was written (see the skipped cases above)", file=sys.stderr)
    return 1


def _import_msd(args: argparse.Namespace, project: Any) -> int:
    from unet_engine.data.importing import import_msd

    labels = parse_labels(args.labels) if args.labels else None
    if project is None:
        ds = import_msd(args.source, args.folder, labels=labels, limit=args.limit, modality=args.modality)
    else:
        if args.modality is not None:
            raise SegLoopError(f"--modality does not apply with --project (project {project.name!r} is "
                               f"{project.modality})")
        check_msd_source(args.source, project, labels, allow_mismatch=args.allow_modality_mismatch)
        ds = import_msd(args.source, project.dataset().folder, labels=labels, limit=args.limit)
    print(f"{ds.folder}: {len(ds.train_cases())} train + {len(ds.val_cases())} val cases")
    return 0


def check_msd_source(source: str, project: Any, labels: dict[int, str] | None, *, allow_mismatch: bool) -> None:
    """Refuse an MSD folder whose labels the project lacks (or names otherwise), or whose scans
    contradict the project's modality (its dataset.json, and its first scan's intensities)."""
    from unet_engine.data.importing import msd_labels, msd_modality, read_msd_meta
    from unet_engine.io.volume_io import read_volume

    folder = Path(source)
    meta = read_msd_meta(folder)
    if labels is None:
        labels = msd_labels(meta)
    if labels:
        unknown = project.unknown_values(labels)
        if unknown:
            raise unknown_labels_error(project, unknown, f"the source {source}")
        renamed = [f"{k} is {v!r} there but {project.labels[k]!r} in the project" for k, v in labels.items()
                   if k != 0 and project.labels[k].casefold() != v.casefold()]
        if renamed:
            raise ProjectError(f"the source {source} names labels differently: label {'; '.join(renamed)}. SegLoop "
                               "never remaps labels; relabel the source or use another project")
    if allow_mismatch:
        return
    src_mod = msd_modality(meta)
    problem = None
    if src_mod:
        from unet_engine.modality import normalize_modality

        try:
            kind = normalize_modality(src_mod, strict=False)
        except SegLoopError:
            kind = "other"
        if kind in ("CT", "MR") and project.modality in ("CT", "MR") and kind != project.modality:
            problem = f"its dataset.json says the scans are {src_mod}, but project {project.name!r} is {project.modality}"
    if problem is None:
        images = sorted(p for p in (folder / "imagesTr").glob("*.nii*") if not p.name.startswith("."))
        if images:
            msg = modality_problem(read_volume(images[0]), project)
            problem = f"{images[0].name}: {msg}" if msg else None
    if problem:
        raise ProjectError(f"{source}: {problem}; nothing imported (pass --allow-modality-mismatch to import anyway)")
