"""`segloop info`: geometry and values of scans and label files; typed errors exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest_io import FIXTURES

from unet_engine.cli.main import main

SPLEEN_LABEL = FIXTURES / "ct_spleen_nifti" / "label.nii.gz"


def run_info(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report_for_a_scan(capsys):
    code, out, _ = run_info(capsys, FIXTURES / "mri_brain_nrrd" / "image.nrrd")
    assert code == 0
    assert "Size         128 x 128 x 25 voxels (i x j x k)" in out
    assert "Spacing      0.78125 x 0.78125 x 6.5 mm" in out
    assert "Orientation  LAS" in out
    assert "Data type    int16" in out and "Format       NRRD" in out
    assert "Labels" not in out


def test_label_file_lists_labels_with_voxels_and_ml(capsys):
    code, out, _ = run_info(capsys, "--json", SPLEEN_LABEL)
    assert code == 0
    info = json.loads(out)
    assert info["is_label"] and info["orientation"] == "RAS"
    assert info["size_ijk"] == [148, 132, 20] and info["shape_kji"] == [20, 132, 148]
    spleen = next(lab for lab in info["labels"] if lab["value"] == 1)
    assert spleen["voxels"] == 96672
    assert spleen["volume_ml"] == pytest.approx(96672 * 0.794922 ** 2 * 5.0 / 1000, rel=1e-5)
    code, out, _ = run_info(capsys, SPLEEN_LABEL)
    assert "96,672" in out and "volume (mL)" in out


def test_float_label_is_detected_and_image_is_not(capsys):
    _, out, _ = run_info(capsys, "--json", FIXTURES / "mri_spinalcord_nifti" / "label.nii.gz")
    assert json.loads(out)["is_label"]
    _, out, _ = run_info(capsys, "--json", FIXTURES / "ct_spleen_nifti" / "image.nii.gz")
    info = json.loads(out)
    assert not info["is_label"] and info["min"] < -800 and info["max"] > 800


def test_dicom_folder(capsys):
    code, out, _ = run_info(capsys, "--json", FIXTURES / "ct_dicom_3slice" / "series")
    info = json.loads(out)
    assert code == 0 and info["modality"] == "CT" and info["format"] == "DICOM series"
    assert (info["min"], info["max"]) == (-3024, 1381)
    assert np.allclose(info["origin_lps_mm"], [-235.2, -226.8, -128.69], atol=1e-3)


def test_forced_label_on_a_ct_is_an_error(capsys):
    code, out, err = run_info(capsys, "--label", FIXTURES / "ct_dicom_3slice" / "series")
    assert code == 2 and out == ""
    assert err.startswith("segloop info: error:") and "negative values" in err and err.count("\n") == 1


def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"")
    code, out, err = run_info(capsys, bad)
    assert code == 2 and out == "" and "scan.nii.gz: the file is empty" in err and err.count("\n") == 1
    code, _, err = run_info(capsys, FIXTURES / "nifti_4d_fmri" / "image.nii.gz")
    assert code == 2 and "2 volumes" in err
    code, out, _ = run_info(capsys, "--volume", "1", FIXTURES / "nifti_4d_fmri" / "image.nii.gz")
    assert code == 0 and "32 x 32 x 12" in out


def test_running_out_of_memory_after_reading_is_one_line(capsys, monkeypatch):
    """A MemoryError where no step names a file (here: describing the volume) still ends in one line, exit 2."""
    from unet_engine.cli.commands import info

    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(info, "describe", exhausted)
    code, out, err = run_info(capsys, FIXTURES / "ct_spleen_nifti" / "image.nii.gz")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("segloop info: error: ran out of memory running this command") and "Traceback" not in err


def test_as_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "unet_engine.cli.main", "info", "--json", str(SPLEEN_LABEL)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"][1]["voxels"] == 96672
