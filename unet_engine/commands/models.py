"""``segloop models list|promote|rollback|compare|delete|import``: the model registry."""

from __future__ import annotations

import argparse
import json
import sys

from unet_engine.errors import SegLoopError


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, promote, roll back, compare and delete model versions",
                              description="Manage the model registry (fine-tuned versions and the active model).")
    p.add_argument("--registry", default=None, help="registry folder (default: SEGLOOP_HOME/models)")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="list versions")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run, action="list")
    pr = sub.add_parser("promote", help="make a version the active model")
    pr.add_argument("version")
    pr.set_defaults(func=run, action="promote")
    rb = sub.add_parser("rollback", help="re-activate the previously active version")
    rb.set_defaults(func=run, action="rollback")
    cp = sub.add_parser("compare", help="metrics of two versions side by side")
    cp.add_argument("a")
    cp.add_argument("b")
    cp.add_argument("--dataset", default=None, help="re-score both on this dataset's validation split")
    cp.add_argument("--device", default="cpu")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=run, action="compare")
    de = sub.add_parser("delete", help="delete a version (not the active one)")
    de.add_argument("version")
    de.set_defaults(func=run, action="delete")
    im = sub.add_parser("import", help="import a checkpoint folder (e.g. the bundled default model) as a version")
    im.add_argument("path", nargs="?", default=None, help="checkpoint folder (default: the bundled default model)")
    im.add_argument("--name", default="")
    im.add_argument("--promote", action="store_true")
    im.set_defaults(func=run, action="import")


def run(args: argparse.Namespace) -> int:
    from unet_engine.registry import ModelRegistry

    reg = ModelRegistry(args.registry)
    action = args.action
    if action == "list":
        versions = reg.list()
        if args.json:
            json.dump([dict(v.to_dict(), path=str(v.path), active=v.active) for v in versions], sys.stdout, indent=2)
            print()
            return 0
        if not versions:
            print(f"{reg.root}: no model versions yet (the bundled default model is used)")
            return 0
        for v in versions:
            mark = "*" if v.active else " "
            dice = v.metrics.get("val_mean_dice")
            print(f"{mark} {v.version}  parent={v.parent or '-':<6} {v.created}  val_dice={_fmt(dice):<7} "
                  f"{v.source:<15} {v.name}")
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
        v = reg.import_checkpoint(path, name=args.name, source=source, promote=args.promote)
        print(f"imported {path} as {v.version}{' (active)' if args.promote else ''}")
        return 0
    if action == "compare":
        ds = None
        if args.dataset:
            from unet_engine.dataset import RetrainingDataset

            ds = RetrainingDataset(args.dataset)
        res = reg.compare(args.a, args.b, dataset=ds, device=args.device)
        if args.json:
            json.dump(res, sys.stdout, indent=2, default=str)
            print()
            return 0
        print(f"{'metric':<36} {res['a']:>10} {res['b']:>10} {'delta':>10}")
        for row in res["rows"]:
            print(f"{row['metric']:<36} {_fmt(row['a']):>10} {_fmt(row['b']):>10} {_fmt(row['delta']):>10}")
        return 0
    raise SegLoopError(f"unknown models action {action!r}")
