"""The modalities a project or dataset can declare, and the one parser for their names."""

from __future__ import annotations

from unet_engine.errors import SegLoopError

MODALITIES = ("CT", "MR", "US", "other")
_ALIASES = {"CT": "CT", "MR": "MR", "MRI": "MR", "US": "US", "ULTRASOUND": "US", "OTHER": "other"}
# names an MSD / older SegLoop dataset.json may carry for an MR sequence
_MR_SEQUENCES = {"T1", "T1W", "T2", "T2W", "FLAIR", "ADC", "DWI", "PD", "T1GD", "T1C", "CINE", "CINE-MRI"}


def normalize_modality(text: str | None, *, strict: bool = True,
                       error: type[SegLoopError] = SegLoopError) -> str:
    """``"CT"``, ``"MR"``, ``"US"`` or ``"other"`` for a project / dataset modality string.

    ``"MRI"`` means MR. ``strict=False`` (a dataset.json's free text) also accepts MR sequence
    names (``"T2"``, ``"FLAIR"``, ...) and ``"unknown"`` or nothing (other). Anything else
    raises ``error`` naming the value.
    """
    raw = str(text or "").strip()
    key = raw.upper()
    if key in _ALIASES:
        return _ALIASES[key]
    if not strict:
        if key in _MR_SEQUENCES:
            return "MR"
        if key in ("", "UNKNOWN"):
            return "other"
    raise error(f"unknown modality {raw!r}; use one of {', '.join(MODALITIES)}")
