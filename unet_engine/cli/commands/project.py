"""``segloop project create|list|show|delete|add-labels``: the user's projects.

A project (``SEGLOOP_HOME/projects/<name>/``) is one structure to segment: its modality,
labels (versioned), retraining dataset, model registry and training plan. Names are
folder names, unique without case. Delete moves the folder to ``projects/.trash`` and asks
first on a terminal (``--yes`` to skip; without a terminal it needs ``--yes``).
"""

from __future__ import annotations

import argparse
import json
import sys

from unet_engine.cli.commands.dataset import parse_labels
from unet_engine.cli.commands.targets import project_store, quote
from unet_engine.errors import ProjectError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("project", help="create, list, show and delete projects",
                              description="Projects: one structure to segment each, with its own labels, dataset, "
                                          "models and training plan (SEGLOOP_HOME/projects/<name>).")
    sub = p.add_subparsers(dest="project_command", metavar="ACTION")
    sub.required = True

    c = sub.add_parser("create", help="create a project")
    c.add_argument("name", help="project name (a folder name: letters, digits, spaces, - _ ( ))")
    c.add_argument("--modality", required=True, help="CT, MR, US or other")
    c.add_argument("--labels", default=None,
                   help='label values and names, e.g. "1=right ventricle,2=myocardium" (default with --from-model: '
                        "the model's labels)")
    c.add_argument("--from-model", default=None, metavar="PATH|default",
                   help="start from a checkpoint folder, or 'default' (the bundled model); default: no model (the "
                        "first one is planned and trained once cases are added)")
    c.add_argument("--description", default="")
    c.add_argument("--val-fraction", type=float, default=0.2, help="share of cases kept for validation")
    c.set_defaults(func=run, action="create")

    ls = sub.add_parser("list", help="list the projects (broken ones with their error)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run, action="list")

    sh = sub.add_parser("show", help="everything about one project")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.set_defaults(func=run, action="show")

    de = sub.add_parser("delete", help="move a project to the trash folder")
    de.add_argument("name")
    de.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    de.set_defaults(func=run, action="delete")

    al = sub.add_parser("add-labels", help="add labels (a new label-schema version; existing ones never change)")
    al.add_argument("name")
    al.add_argument("--labels", required=True, help='new label values and names, e.g. "4=aorta"')
    al.set_defaults(func=run, action="add-labels")


def run(args: argparse.Namespace) -> int:
    return {"create": _create, "list": _list, "show": _show, "delete": _delete, "add-labels": _add_labels}[args.action](args)


def _create(args: argparse.Namespace) -> int:
    from unet_engine.cli.commands.project_info import model_state

    store = project_store()
    labels = parse_labels(args.labels) if args.labels else None
    p = store.create(args.name, modality=args.modality, labels=labels, start_model=args.from_model,
                     description=args.description, val_fraction=args.val_fraction)
    print(f"created project {p.name!r} [{p.modality}] in {p.folder}")
    print(f"  labels: {', '.join(f'{k}={v}' for k, v in p.labels.items())}")
    state = model_state(p)
    print(f"  model: {state['text']}")
    if state["state"] == "none":
        print(f"  next: add corrected cases (segloop dataset add --project {quote(p.name)} --image SCAN --label MASK), "
              f"then train its first model (segloop train --project {quote(p.name)} --minutes M)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from unet_engine.cli.commands.project_info import format_summary, summary

    rows = [summary(e) for e in project_store().entries()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        print("\n".join(format_summary(rows)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from unet_engine.cli.commands.project_info import details, format_details
    from unet_engine.metrics import json_safe

    info = details(project_store().open(args.name))
    if args.json:
        json.dump(json_safe(info), sys.stdout, indent=2)
        print()
    else:
        print("\n".join(format_details(info)))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from unet_engine.cli.commands.project_info import summary

    store = project_store()
    folder = store.find(args.name)
    if folder is None:
        store.open(args.name)  # raises "no project named ..." listing the known ones
    assert folder is not None
    if not args.yes:
        if not (hasattr(sys.stdin, "isatty") and sys.stdin.isatty()):
            raise ProjectError(f"not deleting project {folder.name!r} without confirmation (no terminal to ask on); "
                               "pass --yes")
        entry = next(e for e in store.entries() if e.folder == folder)
        row = summary(entry)
        what = f"{row['cases']} cases, model {row['model']}" if row.get("modality") else "unreadable"
        answer = input(f"Move project {folder.name!r} ({what}) to the trash? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    target = store.delete(folder.name)
    print(f"moved project {folder.name!r} to {target} (move it back into {store.root} to restore it)")
    return 0


def _add_labels(args: argparse.Namespace) -> int:
    from unet_engine.projects import add_labels

    project = project_store().open(args.name)
    before = project.schema_version
    after = add_labels(project, parse_labels(args.labels))
    if after.schema_version == before:
        print(f"project {after.name!r} already has these labels (schema v{before})")
    else:
        print(f"project {after.name!r}: label schema v{after.schema_version} ({after.schema.change}); labels "
              + ", ".join(f"{k}={v}" for k, v in after.labels.items()))
    return 0
