"""Issue 18: File > Open on bad inputs shows one readable message naming the file, never
"Unexpected error" and never a logged traceback, and the app stays usable."""

from __future__ import annotations

import gzip
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PySide6 import QtWidgets

DATA = Path(__file__).parent / "data"
NIFTI = DATA / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
MR_SERIES = DATA / "io" / "mr_hippocampus_dicom" / "series"


def _cut_series_member(d: Path) -> tuple[Path, str]:
    folder = d / "series"
    shutil.copytree(MR_SERIES, folder)
    victim = sorted(folder.iterdir(), key=lambda p: p.name)[0]
    victim.write_bytes(victim.read_bytes()[:-40])
    return folder, victim.name


def _vox_offset_inf(d: Path) -> tuple[Path, str]:
    raw = gzip.decompress(NIFTI.read_bytes())
    hdr = nib.Nifti1Header(binaryblock=raw[:348], check=False)
    hdr["vox_offset"] = np.inf
    path = d / "voxoff.nii"
    path.write_bytes(hdr.binaryblock + raw[348:])
    return path, path.name


def _complex(d: Path) -> tuple[Path, str]:
    img = nib.load(str(NIFTI))
    path = d / "complex.nii"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.complex64), img.affine), str(path))
    return path, path.name


def _long_name(d: Path) -> tuple[Path, str]:
    path = d / ("x" * 293 + ".nii.gz")
    return path, "x" * 30


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "dicom member cut short": _cut_series_member,
    "nifti vox_offset inf": _vox_offset_inf,
    "complex voxels": _complex,
    "300-character name": _long_name,
}


def _open(parts, path: Path) -> tuple[str, str]:
    parts.controller.last_error = None
    assert parts.controller.open_scan(path) is not None
    assert parts.controller.workers.wait_idle(20_000)
    QtWidgets.QApplication.processEvents()
    assert parts.controller.last_error is not None
    for box in [w for w in parts.window.findChildren(QtWidgets.QMessageBox) if w.isVisible()]:
        box.done(0)
    return parts.controller.last_error


@pytest.mark.parametrize("name", list(CASES))
def test_bad_file_dialog_names_it_without_traceback(segloop_app, tmp_path: Path, caplog, name: str) -> None:
    path, shown = CASES[name](tmp_path)
    with caplog.at_level(logging.ERROR):
        title, text = _open(segloop_app, path)
    assert title == "Could not open the scan" and shown in text, text
    assert "Unexpected" not in text and "Traceback" not in text and "\n" not in text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not segloop_app.document.has_image


def test_out_of_memory_while_opening_is_a_message(segloop_app, tmp_path: Path, caplog, monkeypatch) -> None:
    from desktop_app import io_jobs

    def boom(_array: object) -> None:
        raise MemoryError
    monkeypatch.setattr(io_jobs, "intensity_stats", boom)
    with caplog.at_level(logging.ERROR):
        _title, text = _open(segloop_app, NIFTI)
    assert NIFTI.name in text and "memory" in text and "Unexpected" not in text
    assert not [r for r in caplog.records if r.exc_info]
