"""Does a scan look like the modality a project or model expects? (a warning, never a refusal)

CT is stored in Hounsfield units: air near -1000, fat near -100, so any CT volume that
contains air or fat has clearly negative values. MR, ultrasound and photographs have no
negative values. Two contradictions are worth a warning before a model runs or a case
is added:

* an MR project/model and a scan whose values look like Hounsfield units
  (:func:`unet_engine.model.preprocessing.looks_like_hu`: 1st percentile at or below -500);
* a CT project/model and a scan with no value below -200 (no air, no fat: not HU, or a
  CT stored without its rescale).

Statistics come from a regular subsample (at most 2 million voxels), so a 512 x 512 x 300
CT is checked in well under a second.
"""

from __future__ import annotations

import numpy as np

from unet_engine.model.preprocessing import looks_like_hu, subsample
from unet_engine.volume import Volume

#: No value below this in a "CT" scan: no air and no fat, so not Hounsfield units.
CT_MIN_BELOW = -200.0


def modality_mismatch(scan: Volume | np.ndarray, modality: str | None, subject: str = "the model") -> str | None:
    """A sentence saying how ``scan`` contradicts ``modality`` ("CT", "MR", "US", "other"),
    or None when it fits or the modality says nothing about intensities. ``subject`` names
    what expects the modality ("the model", "project 'Spleen CT'")."""
    kind = (modality or "").strip().upper()
    if kind in ("MRI",):
        kind = "MR"
    if kind not in ("CT", "MR"):
        return None
    arr = scan.array if isinstance(scan, Volume) else np.asarray(scan)
    if arr.dtype.kind not in "biuf":
        return None
    flat = subsample(arr.reshape(-1))
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return None
    lo, p1, hi = float(flat.min()), float(np.percentile(flat, 1.0)), float(flat.max())
    if kind == "MR" and looks_like_hu(flat):
        return (f"the scan's values look like CT Hounsfield units (1st percentile {p1:.0f}, range {lo:.0f}..{hi:.0f}), "
                f"but {subject} is for MR")
    if kind == "CT" and lo > CT_MIN_BELOW:
        return (f"the scan has no value below {lo:.0f}, so it is not in CT Hounsfield units (air is -1000, fat "
                f"-100; range {lo:.0f}..{hi:.0f}), but {subject} is for CT")
    return None
