"""``segloop models list|promote|rollback|compare|delete|import``: the model registry.

The registry is ``--registry DIR`` (default ``SEGLOOP_HOME/models``) or a project's
(``--project NAME``); both options are accepted before or after the action.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from unet_engine.cli.commands.report import version_validation
from unet_engine.cli.commands.targets import one_of, open_project
from unet_engine.errors import SegLoopError


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def _where(p: argparse.ArgumentParser, suffix: str = "") -> None:
    p.add_argument("--registry", default=None, dest=f"registry{suffix}",
                   help="registry folder (default: SEGLOOP_HOME/models)")
    p.add_argument("--project", default=None, dest=f"project{suffix}", metavar="NAME",
                   help="work on this project's model registry")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, promote, roll back, compare and delete model versions",
                              description="Manage a model registry (fine-tuned versions and the active model): a "
                                          "folder, or a project's with --project NAME.")
    _where(p, "_top")
    common = argparse.ArgumentParser(add_help=False)
    _where(common)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", parents=[common], help="list versions")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run, action="list")
    pr = sub.add_parser("promote", parents=[common], help="make a version the active model")
    pr.add_argument("version")
    pr.set_defaults(func=run, action="promote")
    rb = sub.add_parser("rollback", parents=[common], help="re-activate the previously active version")
    rb.set_defaults(func=run, action="rollback")
    cp = sub.add_parser("compare", parents=[common], help="metrics of two versions side by side")
    cp.add_argument("a")
    cp.add_argument("b")
    cp.add_argument("--dataset", default=None, help="re-score both on this dataset's validation split")
    cp.add_argument("--device", default="cpu")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=run, action="compare")
    de = sub.add_parser("delete", parents=[common], help="delete a version (not the active one)")
    de.add_argument("version")
    de.set_defaults(func=run, action="delete")
    im = sub.add_parser("import", parents=[common],
                        help="import a checkpoint folder (e.g. the bundled default model) as a version")
    im.add_argument("path", nargs="?", default=None, help="checkpoint folder (default: the bundled default model)")
    im.add_argument("--name", default="")
    im.add_argument("--promote", action="store_true")
    im.set_defaults(func=run, action="import")


def open_registry(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(registry, project or None)`` from ``--registry`` / ``--project`` (before or after the action)."""
    from unet_engine.registry.versions import ModelRegistry

    registry = args.registry if args.registry is not None else args.registry_top
    name = args.project if args.project is not None else args.project_top
    one_of(name, registry, "--registry DIR", required=False)
    if name is None:
        return ModelRegistry(registry), None
    project = open_project(name)
    return project.registry(), project


def check_import_labels(project: Any, folder: Any) -> None:
    """Refuse importing a model whose labels contradict the project's."""
    from unet_engine.model.checkpoint import load_card
    from unet_engine.registry.resolver import resolve_model_path
    from unet_engine.projects.store import check_model_labels

    path = resolve_model_path(str(folder))
    card = load_card(path.parent if path.is_file() else path)
    try:
        check_model_labels(project.labels, card, folder)
    except SegLoopError as exc:
        raise SegLoopError(f"not imported into project {project.name!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    reg, project = open_registry(args)
    action = args.action
    if action == "list":
        versions = reg.list()
        if args.json:
            json.dump([dict(v.to_dict(), path=str(v.path), active=v.active) for v in versions], sys.stdout, indent=2)
            print()
            return 0
        if not versions:
            if project is None:
                print(f"{reg.root}: no model versions yet (the bundled default model is used)")
            else:
                from unet_engine.cli.commands.project_info import model_state

                print(f"project {project.name!r}: no model versions yet; model: {model_state(project)['text']}")
            return 0
        for v in versions:
            mark = "*" if v.active else " "
            print(f"{mark} {v.version}  parent={v.parent or '-':<6} {v.created}  {v.source:<15} "
                  f"{version_validation(v)}" + (f"  {v.name}" if v.name else ""))
        return 0
    if action == "promote":
        v = reg.promote(args.version)
        print(f"{v.version} is now the active model")
        return 0
    if action == "rollback":
        v = reg.rollback()
        print(f"rolled back: {v.version} is now the active model")
        return 0
    if action == "delete":
        reg.delete(args.version)
        print(f"deleted {args.version}")
        return 0
    if action == "import":
        if args.path is None:
            from unet_engine.paths import BUNDLED_MODELS

            path, source = BUNDLED_MODELS / "default", "bundled-default"
        else:
            path, source = args.path, "import"
        if project is not None:
            check_import_labels(project, path)
        v = reg.import_checkpoint(path, name=args.name, source=source, promote=args.promote)
        print(f"imported {path} as {v.version}{' (active)' if args.promote else ''}")
        return 0
    if action == "compare":
        rescore = None
        if args.dataset:
            from unet_engine.data.dataset import RetrainingDataset
            from unet_engine.training.validation import val_split_rescorer

            rescore = val_split_rescorer(reg, RetrainingDataset(args.dataset), args.device)
        res = reg.compare(args.a, args.b, rescore=rescore)
        if args.json:
            json.dump(res, sys.stdout, indent=2, default=str)
            print()
            return 0
        print(f"{'metric':<36} {res['a']:>10} {res['b']:>10} {'delta':>10}")
        for row in res["rows"]:
            print(f"{row['metric']:<36} {_fmt(row['a']):>10} {_fmt(row['b']):>10} {_fmt(row['delta']):>10}")
        return 0
    raise SegLoopError(f"unknown models action {action!r}")
