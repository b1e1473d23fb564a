"""The headless half of the ``segloop`` command.

Each subcommand lives in ``unet_engine/cli/commands/<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func=run`` where
``run(args) -> int`` does the work. Errors derived from :class:`SegLoopError` are printed
as one readable line (no traceback) and give exit code 2; so is any :class:`OSError`
that escapes a command (a file name too long, a full disk...) and any :class:`MemoryError`
that no reader or prediction named its file for.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from unet_engine.errors import SegLoopError, os_reason, short_path

#: subcommand name -> module under unet_engine.cli.commands
SUBCOMMANDS: dict[str, str] = {
    "info": "info",
    "predict": "predict",
    "eval": "evaluate",
    "train": "train",
    "dataset": "dataset",
    "models": "models",
    "project": "project",
    "loop-sim": "loop_sim",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segloop",
        description="SegLoop: view, correct and retrain U-Net segmentations. "
        "Run with no arguments (or a scan file) to open the desktop app.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(f"unet_engine.cli.commands.{module}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet must not break the rest
            if exc.name != f"unet_engine.cli.commands.{module}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except SegLoopError as exc:
        print(f"segloop {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an OS refusal that no reader turned into a SegLoopError: still one line
        where = f"{short_path(exc.filename)}: " if getattr(exc, "filename", None) else ""
        print(f"segloop {args.command}: error: {where}{os_reason(exc)}", file=sys.stderr)
        return 2
    except MemoryError:  # outside the steps that name their file (reading, predicting): still one line
        from unet_engine.io.checks import out_of_memory_message

        print(f"segloop {args.command}: error: {out_of_memory_message('running this command')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segloop {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
