"""Modality checks of the open scan (no Qt), computed off the GUI thread.

The scan-load worker computes :func:`modality_notes` (how the scan contradicts a CT or an
MR project, or None) and the controller records them here; the modality guard reads them
when the user presses Run model or Add to training set, so nothing is computed on the
GUI thread at click time. A scan shown without the loader (tests, tools) has no record;
the guard then computes it in a worker.
"""

from __future__ import annotations

import logging
from typing import Any

from unet_engine.data.modality_check import modality_mismatch

log = logging.getLogger(__name__)

#: Modalities whose intensities say something (US / other: never a warning).
CHECKED_MODALITIES = ("CT", "MR")
#: What the notes say expects the modality (the guard names the project in its place).
SUBJECT = "the project"


def modality_notes(volume: Any) -> dict[str, str | None]:
    """``{"CT": sentence | None, "MR": sentence | None}`` for ``volume`` (runs in a worker)."""
    notes: dict[str, str | None] = {}
    for modality in CHECKED_MODALITIES:
        try:
            try:
                notes[modality] = modality_mismatch(volume, modality, subject=SUBJECT)
            except TypeError:  # an engine without ``subject``: "... but the model is for MR"
                notes[modality] = modality_mismatch(volume, modality)
        except Exception as exc:  # noqa: BLE001 - a check that fails must not block opening the scan
            log.warning("modality check (%s) failed: %s", modality, exc)
            notes[modality] = None
    return notes


class ScanChecks:
    """The modality notes of one scan (the last one recorded)."""

    def __init__(self) -> None:
        self._volume: Any = None
        self._notes: dict[str, str | None] | None = None
        self._accepted: set[tuple[str, str]] = set()  # (modality, action) the user said "anyway" to

    def record(self, volume: Any, notes: dict[str, str | None]) -> None:
        if volume is not self._volume:
            self._accepted.clear()
        self._volume, self._notes = volume, dict(notes)

    def known(self, volume: Any) -> bool:
        return self._notes is not None and volume is self._volume

    def mismatch(self, volume: Any, modality: str | None) -> str | None:
        """How ``volume`` contradicts ``modality`` (None: it fits, not checked, or not checkable)."""
        if not self.known(volume) or modality not in CHECKED_MODALITIES:
            return None
        assert self._notes is not None
        return self._notes.get(str(modality))

    def accept(self, volume: Any, modality: str, action: str) -> None:
        """The user chose to go on anyway with ``action`` on this scan."""
        if volume is self._volume:
            self._accepted.add((modality, action))

    def accepted(self, volume: Any, modality: str, action: str) -> bool:
        return volume is self._volume and (modality, action) in self._accepted
