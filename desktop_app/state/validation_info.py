"""Make a version's validation metrics complete enough to be shown honestly (no Qt).

:func:`unet_engine.training.validation.validation_text` reads "no validation yet" below 2 validation
cases and names n/a labels, but it needs ``val_cases`` and ``val_na_labels`` in the
metrics. A fine-tune's final metrics (and versions made by earlier SegLoop versions) may
lack them; the count is then taken from what the run was validated on (its dataset
snapshot and ``val_max_cases``), and a label whose Dice is None (absent from every
validation case) is listed as n/a -- never shown as a score.
"""

from __future__ import annotations

from typing import Any

from unet_engine.training.validation import MIN_VALIDATION_CASES


def completed_metrics(metrics: dict[str, Any] | None, val_cases: int | None = None) -> dict[str, Any]:
    """``metrics`` with ``val_cases`` (when missing and known) and ``val_na_labels`` filled in;
    None Dice values move from ``val_dice`` to ``val_na_labels``."""
    out = dict(metrics or {})
    if not isinstance(out.get("val_cases"), int) and val_cases is not None:
        out["val_cases"] = int(val_cases)
    dice = dict(out.get("val_dice") or {})
    na = [str(n) for n in (out.get("val_na_labels") or [])]
    na += [str(k) for k, v in dice.items() if v is None and str(k) not in na]
    out["val_na_labels"] = na
    out["val_dice"] = {k: v for k, v in dice.items() if v is not None}
    return out


def version_val_cases(version: Any) -> int | None:
    """Validation cases a registry version was scored on (None: unknown, e.g. an import)."""
    metrics = getattr(version, "metrics", None) or {}
    if isinstance(metrics.get("val_cases"), int):
        return int(metrics["val_cases"])
    cases = (getattr(version, "dataset", None) or {}).get("cases") or []
    if not cases:
        return None
    n = sum(1 for c in cases if isinstance(c, dict) and c.get("split") == "val")
    limit = (getattr(version, "config", None) or {}).get("val_max_cases")
    return min(n, int(limit)) if limit else n


def missing_validation(version: Any) -> str | None:
    """Why registry version ``version`` has no validation Dice to judge it by, e.g. "fewer
    than 2 validation cases" (None: it has one)."""
    metrics = completed_metrics(getattr(version, "metrics", None), version_val_cases(version))
    cases = metrics.get("val_cases")
    if isinstance(cases, int) and cases < MIN_VALIDATION_CASES:
        return f"fewer than {MIN_VALIDATION_CASES} validation cases"
    if metrics.get("val_mean_dice") is None:
        return "never scored on a validation split"
    return None
