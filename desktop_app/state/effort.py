"""Correction-effort log (no Qt): how much the reviewer changed each model prediction.

One record per case added to the training set: the number of voxels that differ between
the model's prediction and the corrected mask, the Dice per label between them, the
model version that made the prediction, the case and the time. The log is a JSON file,
``segloop_home()/effort_log.json`` (written atomically), read by the effort chart: if the
learning loop works, the voxels corrected per case fall as model versions improve.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_engine.io.atomic import atomic_write_json
from unet_engine.metrics import dice_or_none
from unet_engine.paths import segloop_home

log = logging.getLogger(__name__)

LOG_NAME = "effort_log.json"


@dataclass
class EffortRecord:
    case: str
    model_version: str
    voxels_changed: int
    voxels_total: int
    dice: dict[str, float] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    dataset: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EffortRecord":
        return cls(case=str(d.get("case", "")), model_version=str(d.get("model_version", "?")),
                   voxels_changed=int(d.get("voxels_changed", 0)), voxels_total=int(d.get("voxels_total", 0)),
                   dice={str(k): float(v) for k, v in (d.get("dice") or {}).items()},
                   time=float(d.get("time", 0.0)), dataset=str(d.get("dataset", "")))


def correction_stats(prediction: np.ndarray, corrected: np.ndarray,
                     labels: dict[int, str]) -> tuple[np.ndarray, int, dict[str, float | None]]:
    """(edited-voxel mask, voxels changed, Dice per label name) between prediction and correction.

    A label absent from both masks is n/a (None): there was nothing to agree on, so it is
    never counted as a perfect 1.0 (:func:`unet_engine.metrics.dice_or_none`).
    """
    edited = prediction != corrected
    dice = {str(name): dice_or_none(prediction, corrected, int(value))
            for value, name in sorted(labels.items()) if int(value) != 0}
    return edited, int(np.count_nonzero(edited)), dice


def dice_text(dice: dict[str, float | None]) -> str:
    """``"anterior 0.912, posterior n/a"``."""
    return ", ".join(f"{k} n/a" if v is None else f"{k} {v:.3f}" for k, v in dice.items())


class EffortLog:
    """The persisted list of :class:`EffortRecord` (oldest first)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else segloop_home() / LOG_NAME
        self._records: list[EffortRecord] | None = None

    def records(self) -> list[EffortRecord]:
        if self._records is None:
            self._records = self._load()
        return list(self._records)

    def _load(self) -> list[EffortRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [EffortRecord.from_dict(d) for d in data.get("records", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("unreadable correction-effort log %s (%s); starting a new one", self.path, exc)
            return []

    def add(self, record: EffortRecord) -> None:
        """Append ``record`` (a re-added case replaces its earlier record for the same version)."""
        recs = [r for r in self.records() if not (r.case == record.case and r.model_version == record.model_version)]
        recs.append(record)
        self._records = recs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"format": "segloop-effort-log", "records": [asdict(r) for r in recs]})

    def by_version(self) -> dict[str, list[EffortRecord]]:
        out: dict[str, list[EffortRecord]] = {}
        for r in sorted(self.records(), key=lambda r: r.time):
            out.setdefault(r.model_version, []).append(r)
        return out

    def mean_by_version(self) -> dict[str, float]:
        return {v: float(np.mean([r.voxels_changed for r in rs])) for v, rs in self.by_version().items()}
