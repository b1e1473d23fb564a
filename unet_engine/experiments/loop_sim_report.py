"""Outputs of ``segloop loop-sim``: the CSV of rounds, the learning-curve PNG, a JSON summary."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from unet_engine.io.atomic import atomic_write_json
from unet_engine.experiments.loop_sim import HoldoutScore, RoundRecord

# effort measures: (summary key prefix, stream-case field, held-out field, plot title)
EFFORTS = (
    ("effort", "voxels_to_correct", "holdout_voxels_to_correct", "voxels (pred != truth)"),
    ("beyond_tolerance", "voxels_beyond_tolerance", "holdout_voxels_beyond_tolerance", "voxels beyond 1 mm of the truth"),
    ("outline", "surface_to_redraw", "holdout_surface_to_redraw", "outline beyond 1 mm"),
)


def csv_columns(label_names: list[str]) -> list[str]:
    cols = ["mode", "round", "corrected_cases", "case_id", "voxels_to_correct"]
    cols += [f"voxels_to_correct_{n}" for n in label_names]
    cols += [f"case_dice_{n}" for n in label_names]
    cols += ["surface_to_redraw", "voxels_beyond_tolerance"]
    cols += [f"holdout_dice_{n}" for n in label_names]
    cols += ["holdout_mean_dice", "holdout_voxels_to_correct", "holdout_surface_to_redraw",
             "holdout_voxels_beyond_tolerance", "predict_s", "train_s", "round_s", "eval_s", "steps", "version"]
    return cols


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


def record_row(rec: RoundRecord, label_names: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"mode": rec.mode, "round": rec.round, "corrected_cases": rec.corrected_cases,
                           "case_id": rec.case_id, "voxels_to_correct": rec.voxels_to_correct}
    for n in label_names:
        row[f"voxels_to_correct_{n}"] = rec.per_label_to_correct.get(n)
        row[f"case_dice_{n}"] = rec.case_dice.get(n)
        row[f"holdout_dice_{n}"] = rec.holdout_dice.get(n)
    row.update(surface_to_redraw=rec.surface_to_redraw, voxels_beyond_tolerance=rec.voxels_beyond_tolerance,
               holdout_mean_dice=rec.holdout_mean_dice, holdout_voxels_to_correct=rec.holdout_voxels_to_correct,
               holdout_surface_to_redraw=rec.holdout_surface_to_redraw,
               holdout_voxels_beyond_tolerance=rec.holdout_voxels_beyond_tolerance, predict_s=rec.predict_s,
               train_s=rec.train_s, round_s=rec.round_s, eval_s=rec.eval_s, steps=rec.steps, version=rec.version)
    return {k: _fmt(v) for k, v in row.items()}


def write_csv(path: Path, records: list[RoundRecord], label_names: list[str],
              reference: HoldoutScore | None = None) -> Path:
    """One row per (mode, round); the reference model (if any) as mode ``reference``, round -1."""
    rows = [record_row(r, label_names) for r in records]
    if reference is not None:
        ref = RoundRecord("reference", -1, 0, holdout_dice=reference.per_label, holdout_mean_dice=reference.mean,
                          holdout_voxels_to_correct=reference.voxels_to_correct,
                          holdout_surface_to_redraw=reference.surface_to_redraw,
                          holdout_voxels_beyond_tolerance=reference.voxels_beyond_tolerance)
        rows.append(record_row(ref, label_names))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=csv_columns(label_names))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


def _edge_mean(values: list[float], n: int, first: bool) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    part = vals[:n] if first else vals[-n:]
    return float(np.mean(part))


def summarize(records: list[RoundRecord], reference: HoldoutScore | None, window: int = 5) -> dict[str, Any]:
    """Per mode: start/end held-out Dice, correction effort first vs last rounds, time per round.

    Each effort measure (``EFFORTS``) is given twice: on the stream (each round's new case, so
    case difficulty adds noise) and on the fixed held-out set (the same cases for the start and
    the end model).
    """
    out: dict[str, Any] = {}
    for mode in dict.fromkeys(r.mode for r in records):
        rs = [r for r in records if r.mode == mode]
        rounds = [r for r in rs if r.round > 0]
        w = max(1, min(window, len(rounds) // 2 or 1))
        end = rs[-1]
        d: dict[str, Any] = {
            "rounds": len(rounds), "start_holdout_dice": rs[0].holdout_dice, "start_holdout_mean_dice": rs[0].holdout_mean_dice,
            "end_holdout_dice": end.holdout_dice, "end_holdout_mean_dice": end.holdout_mean_dice, "effort_window": w,
        }
        for key, stream, held, _ in EFFORTS:
            values = [float(getattr(r, stream)) for r in rounds if getattr(r, stream) is not None]
            first, last = _edge_mean(values, w, True), _edge_mean(values, w, False)
            start, stop = getattr(rs[0], held), getattr(end, held)
            d.update({f"{key}_first_mean": first, f"{key}_last_mean": last,
                      f"{key}_ratio_last_over_first": (last / first) if first and last is not None else None,
                      f"holdout_{key}_start": start, f"holdout_{key}_end": stop,
                      f"holdout_{key}_ratio_end_over_start": _ratio(stop, start)})
        d["round_s_median"] = float(np.median([r.round_s for r in rounds])) if rounds else None
        d["round_s_max"] = float(max(r.round_s for r in rounds)) if rounds else None
        if reference is not None:
            d["gap_to_reference_mean_dice"] = reference.mean - end.holdout_mean_dice
            d["gap_to_reference_dice"] = {k: reference.per_label[k] - end.holdout_dice.get(k, float("nan"))
                                          for k in reference.per_label}
        out[mode] = d
    if reference is not None:
        out["reference"] = {"holdout_dice": reference.per_label, "holdout_mean_dice": reference.mean,
                            "holdout_voxels_to_correct": reference.voxels_to_correct,
                            "holdout_surface_to_redraw": reference.surface_to_redraw,
                            "holdout_voxels_beyond_tolerance": reference.voxels_beyond_tolerance}
    return out


def _ratio(a: float, b: float) -> float | None:
    return None if math.isnan(a) or math.isnan(b) or not b else a / b


def write_summary(path: Path, config: dict[str, Any], summary: dict[str, Any], cases: dict[str, list[str]]) -> Path:
    atomic_write_json(path, {"config": config, "cases": cases, "summary": summary})
    return path


def plot(path: Path, records: list[RoundRecord], reference: HoldoutScore | None,
         title: str = "") -> Path:
    """Held-out mean Dice and correction effort vs corrected cases, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(13, 8.8), dpi=110)
    ax1, effort_axes = grid[0, 0], [grid[0, 1], grid[1, 0], grid[1, 1]]
    modes = list(dict.fromkeys(r.mode for r in records))
    for mode in modes:
        rs = [r for r in records if r.mode == mode]
        ax1.plot([r.corrected_cases for r in rs], [r.holdout_mean_dice for r in rs], marker="o", ms=3, label=mode)
        colour = ax1.lines[-1].get_color()
        names = list(dict.fromkeys(n for r in rs for n in r.holdout_dice))
        if len(modes) == 1 and len(names) > 1:  # one mode: the labels' own curves too
            for name, style in zip(names, (":", "--", "-.", (0, (1, 3)), (0, (5, 5)))):
                ax1.plot([r.corrected_cases for r in rs], [r.holdout_dice.get(name, math.nan) for r in rs], ls=style,
                         lw=1.2, color=colour, alpha=0.7, label=f"{mode}: {name}")
        for ax, (_, stream, held, _) in zip(effort_axes, EFFORTS):
            rr = [r for r in rs if r.round > 0 and getattr(r, stream) is not None]
            # a stream round's effort is measured with the model trained on corrected_cases - 1 cases
            ax.plot([r.corrected_cases - 1 for r in rr], [getattr(r, stream) for r in rr], marker="o",
                    ms=3, color=colour, alpha=0.4, lw=1, label=f"{mode}: next new case")
            rh = [r for r in rs if not math.isnan(getattr(r, held))]
            if rh:
                ax.plot([r.corrected_cases for r in rh], [getattr(r, held) for r in rh], color=colour, lw=2.2,
                        label=f"{mode}: held-out mean")
    if reference is not None:
        ax1.axhline(reference.mean, color="k", ls="--", lw=1, label=f"all-data model ({reference.mean:.3f})")
        ax1.axhline(reference.mean - 0.03, color="grey", ls=":", lw=1, label="all-data - 0.03")
        for ax, (_, _, held, _) in zip(effort_axes, EFFORTS):
            value = getattr(reference, held.removeprefix("holdout_"))
            if not math.isnan(value):
                ax.axhline(value, color="k", ls="--", lw=1, label="all-data model, held-out")
    ax1.set_ylabel("held-out Dice (mean over labels; labels dotted)")
    ax1.set_title("Accuracy on the held-out set")
    for ax, (_, _, _, title_) in zip(effort_axes, EFFORTS):
        ax.set_title(f"Correction effort: {title_}")
        if any(min(line.get_ydata(), default=1) <= 0 for line in ax.lines):  # log cannot show a zero count
            ax.set_yscale("symlog", linthresh=10)
            ax.set_ylim(bottom=0)
            ax.set_ylabel("per case (log above 10)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("per case (log)")
    for ax in grid.ravel():
        ax.set_xlabel("corrected cases the model was trained on")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def records_from_csv(path: Path, label_names: list[str]) -> list[RoundRecord]:
    """The rounds of a written ``loop_sim.csv`` (reference rows left out), for re-plotting."""
    def num(v: str, cast: Any = float) -> Any:
        return None if v == "" else cast(float(v)) if cast is int else cast(v)

    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["mode"] == "reference":
                continue
            rec = RoundRecord(row["mode"], int(row["round"]), int(row["corrected_cases"]), row["case_id"],
                              num(row["voxels_to_correct"], int))
            for n in label_names:
                if row.get(f"voxels_to_correct_{n}"):
                    rec.per_label_to_correct[n] = int(float(row[f"voxels_to_correct_{n}"]))
                if row.get(f"case_dice_{n}"):
                    rec.case_dice[n] = float(row[f"case_dice_{n}"])
                if row.get(f"holdout_dice_{n}"):
                    rec.holdout_dice[n] = float(row[f"holdout_dice_{n}"])
            rec.holdout_mean_dice = num(row["holdout_mean_dice"]) if row["holdout_mean_dice"] else float("nan")
            if row.get("holdout_voxels_to_correct"):
                rec.holdout_voxels_to_correct = float(row["holdout_voxels_to_correct"])
            if row.get("surface_to_redraw"):
                rec.surface_to_redraw = int(float(row["surface_to_redraw"]))
            if row.get("holdout_surface_to_redraw"):
                rec.holdout_surface_to_redraw = float(row["holdout_surface_to_redraw"])
            if row.get("voxels_beyond_tolerance"):
                rec.voxels_beyond_tolerance = int(float(row["voxels_beyond_tolerance"]))
            if row.get("holdout_voxels_beyond_tolerance"):
                rec.holdout_voxels_beyond_tolerance = float(row["holdout_voxels_beyond_tolerance"])
            for k in ("predict_s", "train_s", "round_s", "eval_s"):
                setattr(rec, k, float(row[k] or 0.0))
            rec.steps, rec.version = int(float(row["steps"] or 0)), row["version"]
            out.append(rec)
    return out
