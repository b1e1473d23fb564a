"""How scores read on the command line: n/a for a label absent on both sides, and no
validation Dice below :data:`unet_engine.training.validation.MIN_VALIDATION_CASES` cases."""

from __future__ import annotations

import math
from typing import Any


def fmt_score(value: Any, digits: int = 4) -> str:
    """``0.8123`` for a number, ``n/a`` for None/NaN (a label absent from prediction and reference)."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def honest_metrics(metrics: dict[str, Any], val_cases: int | None = None) -> dict[str, Any]:
    """``metrics`` with ``val_cases`` and ``val_na_labels`` filled in where a registry version
    lacks them, so :func:`unet_engine.training.validation.validation_text` can judge them."""
    out = dict(metrics or {})
    if not isinstance(out.get("val_cases"), int) and val_cases is not None:
        out["val_cases"] = int(val_cases)
    dice = out.get("val_dice") or {}
    if "val_na_labels" not in out and isinstance(dice, dict):
        out["val_na_labels"] = [k for k, v in dice.items() if v is None]
    return out


def version_val_cases(info: Any) -> int | None:
    """Validation cases a registry version was scored on (from its dataset record)."""
    cases = (getattr(info, "dataset", None) or {}).get("cases")
    if not isinstance(cases, list):
        return None
    return sum(1 for c in cases if isinstance(c, dict) and c.get("split") == "val")


def version_validation(info: Any) -> str:
    """The validation of a registry version, as a user should read it."""
    from unet_engine.training.validation import validation_text

    metrics = honest_metrics(info.metrics, version_val_cases(info))
    if info.source not in ("fine-tune", "scratch") and metrics.get("val_mean_dice") is None:
        return "not validated here (imported)"
    return validation_text(metrics)


def epoch_line(report: Any, label_names: list[str], val_cases: int) -> str:
    """One validation of a run (``EpochReport``): per-label Dice with n/a, or "no validation yet"."""
    from unet_engine.training.validation import MIN_VALIDATION_CASES

    tag = "start" if report.epoch == 0 else f"epoch {report.epoch}"
    if val_cases < MIN_VALIDATION_CASES:
        return f"{tag}: no validation yet ({val_cases} validation case{'s' if val_cases != 1 else ''})"
    dice = " ".join(f"{n}={fmt_score(report.val_dice.get(n), 3)}" for n in label_names)
    return (f"{tag}: val Dice {dice} (mean {fmt_score(report.val_mean_dice)})"
            f"{' *best*' if report.improved else ''}")
