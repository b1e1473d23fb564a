"""Put the modes of separate `segloop loop-sim` runs (same seed, same start) into one CSV, plot
and summary, e.g. to run the modes in parallel processes.

    .venv/bin/python bench/loop_sim_combine.py --out bench/loop_sim/loop_sim_3d_compare \
        --rounds 15 RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds a loop_sim.csv and summary.json; their starting cases and held-out cases
must match (checked). ``--rounds`` keeps rounds 0..N of every mode; the reference row is
taken from the first run that has one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_engine.experiments import loop_sim_report as report  # noqa: E402
from unet_engine.experiments.loop_sim import HoldoutScore  # noqa: E402


def _reference(csv_path: Path, names: list[str]) -> HoldoutScore | None:
    with csv_path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["mode"] == "reference":
                per = {n: float(row[f"holdout_dice_{n}"]) for n in names}
                return HoldoutScore(per, float(row["holdout_mean_dice"]), float(row["holdout_voxels_to_correct"]),
                                    float(row["holdout_surface_to_redraw"]),
                                    float(row.get("holdout_voxels_beyond_tolerance") or "nan"))
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True, help="output path prefix (writes .csv, .png, _summary.json)")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs]
    saved = [json.loads((r / "summary.json").read_text()) for r in runs]
    for s in saved[1:]:
        for key in ("initial", "holdout"):
            if s["cases"][key] != saved[0]["cases"][key]:
                raise SystemExit(f"the runs differ in their {key} cases")
    names = [saved[0]["config"]["labels"][k] for k in sorted(saved[0]["config"]["labels"], key=int)]
    records, reference = [], None
    for r in runs:
        recs = report.records_from_csv(r / "loop_sim.csv", names)
        records += [x for x in recs if args.rounds is None or x.round <= args.rounds]
        reference = reference or _reference(r / "loop_sim.csv", names)
    out = Path(args.out)
    report.write_csv(out.with_suffix(".csv"), records, names, reference)
    cfg = saved[0]["config"]
    report.plot(out.with_suffix(".png"), records, reference,
                f"loop-sim modes: start {cfg['initial']} cases/{cfg['initial_steps']} steps, {cfg['steps_per_round']} "
                f"steps/round, {len(saved[0]['cases']['holdout'])} held-out cases, seed {cfg['seed']}")
    report.write_summary(out.with_name(out.name + "_summary.json"), cfg, report.summarize(records, reference),
                         saved[0]["cases"])
    print("wrote", out.with_suffix(".csv"), out.with_suffix(".png"), out.with_name(out.name + "_summary.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
