"""Held-out Dice of several `segloop loop-sim` runs (one recipe each) against the corrected cases, one plot.

    .venv/bin/python bench/acdc_loop_compare.py --out bench/loop_sim/acdc_compare.png \
        "whole slices, 100 steps @ 3e-4=bench/loop_sim/acdc_first_plan.csv" "patch ...=...csv" ...

Each argument is ``LABEL=CSV`` (a loop-sim CSV); the mean over the labels is drawn solid, and
a dotted line marks ``--target``. Prints the mean Dice at ``--at`` corrected cases per run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["mode"] != "reference"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=CSV")
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", type=float, default=0.85)
    ap.add_argument("--at", type=int, nargs="*", default=[3, 10, 25])
    ap.add_argument("--title", default="ACDC loop-sim: held-out mean Dice (10 patients = 20 volumes)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for item in args.runs:
        label, _, path = item.rpartition("=")
        if not label:
            print(f"expected LABEL=CSV, got {item!r}", file=sys.stderr)
            return 2
        rows = _rows(Path(path))
        x = [int(r["corrected_cases"]) for r in rows]
        y = [float(r["holdout_mean_dice"]) for r in rows]
        ax.plot(x, y, marker="o", ms=3, label=label)
        at = {int(r["corrected_cases"]): float(r["holdout_mean_dice"]) for r in rows}
        print(f"{label}: " + ", ".join(f"{n} cases {at[n]:.3f}" for n in args.at if n in at))
    ax.axhline(args.target, color="k", ls=":", lw=1, label=f"target {args.target:g}")
    ax.set_xlabel("corrected volumes the model was trained on")
    ax.set_ylabel("held-out mean Dice (RV, myocardium, LV)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
