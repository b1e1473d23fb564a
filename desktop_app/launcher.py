"""Entry point of the ``segloop`` console command.

``segloop`` with no arguments or with a scan path opens the GUI; ``segloop <subcommand>``
runs the headless engine CLI (:mod:`unet_engine.cli.main`). Qt is imported only for the GUI
so headless subcommands work on machines without a display; before it, the GUI path checks
that Qt's window can open here (:mod:`desktop_app.qt_platform_check`) and otherwise exits 1
with the packages to install.
"""

from __future__ import annotations

import argparse
import sys

from desktop_app import qt_platform_check
from unet_engine.cli.main import SUBCOMMANDS
from unet_engine.cli.main import main as engine_main


def gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segloop",
        description="Open the SegLoop desktop app. Headless subcommands: " + ", ".join(SUBCOMMANDS)
        + " (segloop COMMAND --help).",
    )
    parser.add_argument("scan", nargs="?", help="scan file or DICOM folder to open")
    parser.add_argument("--mask", help="label mask to open over the scan")
    parser.add_argument("--model", default=None, help="model checkpoint to load (path or 'default')")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-v", "--verbose")):
        return engine_main(argv)
    args = gui_parser().parse_args(argv)
    problem = qt_platform_check.check()  # before Qt: a missing X11 library aborts QApplication
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from desktop_app.app import run_gui  # Qt only from here on

    return run_gui(scan=args.scan, mask=args.mask, model=args.model)


if __name__ == "__main__":
    sys.exit(main())
