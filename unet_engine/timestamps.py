"""The one timestamp format SegLoop records (cards, registries, datasets, projects)."""

from __future__ import annotations

import datetime as _dt


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-11-30T07:12:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
