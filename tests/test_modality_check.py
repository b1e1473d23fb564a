"""A scan that contradicts a project's modality is named (a warning before a run), on real files."""

from __future__ import annotations

import numpy as np

from tests.train_helpers import DATA, HIPPO
from unet_engine.io.volume_io import read_volume
from unet_engine.data.modality_check import modality_mismatch


def test_ct_and_mr_scans_against_ct_and_mr_models():
    ct = read_volume(DATA / "io" / "ct_spleen_nifti" / "image.nii.gz")
    mr = read_volume(HIPPO / "imagesTr" / "hippocampus_001.nii.gz")
    assert "Hounsfield" in modality_mismatch(ct, "MR") and "for MR" in modality_mismatch(ct, "MRI")
    assert modality_mismatch(ct, "CT") is None and modality_mismatch(mr, "MR") is None
    assert "not in CT Hounsfield units" in modality_mismatch(mr, "CT")
    for other in ("US", "other", None):  # no intensity convention to contradict
        assert modality_mismatch(ct, other) is None and modality_mismatch(mr, other) is None


def test_degenerate_arrays_say_nothing():
    assert modality_mismatch(np.full((4, 4, 4), np.nan, np.float32), "CT") is None
    assert modality_mismatch(np.zeros((0, 4, 4), np.int16), "MR") is None
