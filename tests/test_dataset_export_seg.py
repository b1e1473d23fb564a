"""Export a dataset's cases as DICOM SEG where the source was DICOM (issue 16): a case from the
3-slice CT series is written and reads back over that series, a NIfTI case is skipped, a
deleted source series and an image off the series' grid are skipped with their reason, the
output may not lie inside a source series, and the CLI (folder and --project forms)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from unet_engine.cli.main import main
from unet_engine.data.dataset import RetrainingDataset
from unet_engine.data.export_seg import (GEOMETRY_DIFFERS, NOT_DICOM, SOURCE_MISSING, WRITTEN,
                                            export_dicom_seg)
from unet_engine.io.dicom_seg import read_dicom_seg
from unet_engine.errors import SegLoopError
from unet_engine.io.volume_io import read_volume, write_mask
from unet_engine.volume import Volume

DATA = Path(__file__).parent / "data"
CT3 = DATA / "io" / "ct_dicom_3slice" / "series"
NIFTI = DATA / "io" / "ct_spleen_nifti"

pytestmark = pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent:UserWarning")

LABELS = {1: "liver", 2: "spine"}


def _mask(shape) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[0:2, 100:140, 200:260] = 1
    m[1:3, 300:310, 50:90] = 2
    m[2, 5:8, 500:505] = 2
    return m


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture()
def series(tmp_path) -> Path:
    """A private copy of the 3-slice CT series (tests delete it)."""
    dst = tmp_path / "src" / "ct_series"
    shutil.copytree(CT3, dst)
    return dst


def _dataset_with_dicom_and_nifti(folder: Path, series: Path) -> tuple[RetrainingDataset, str, str, np.ndarray]:
    ds = RetrainingDataset.create(folder, LABELS, modality="CT")
    ct = read_volume(series)
    mask = _mask(ct.shape)
    dicom_id = ds.add_case(ct, mask, source_path=series)
    nifti_image = NIFTI / "image.nii.gz"
    nifti_id = ds.add_case(read_volume(nifti_image), read_volume(NIFTI / "label.nii.gz"), source_path=nifti_image)
    return ds, dicom_id, nifti_id, mask


def test_writes_the_dicom_case_and_skips_the_nifti_case(tmp_path, series):
    ds, dicom_id, nifti_id, mask = _dataset_with_dicom_and_nifti(tmp_path / "ds", series)
    steps = []
    report = export_dicom_seg(ds, tmp_path / "out", colours={1: (10, 200, 30)}, progress=steps.append)
    by_id = {c.case_id: c for c in report.cases}
    assert set(by_id) == {dicom_id, nifti_id}
    assert by_id[dicom_id].status == WRITTEN and by_id[dicom_id].path == tmp_path / "out" / f"{dicom_id}.dcm"
    assert by_id[nifti_id].status == NOT_DICOM and "image.nii.gz" in by_id[nifti_id].reason
    assert [c.case_id for c in report.written] == [dicom_id] and report.any_dicom
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{dicom_id}.dcm"]
    assert steps and steps[-1].fraction == 1.0
    back = read_dicom_seg(by_id[dicom_id].path, read_volume(series))
    assert np.array_equal(back.array, mask)
    assert [(e.value, e.name) for e in back.labels] == [(1, "liver"), (2, "spine")]
    colour = next(e.colour for e in back.labels if e.value == 1)
    assert all(abs(a - b) <= 1 for a, b in zip(colour, (10, 200, 30))), colour
    # the source series is untouched
    assert sorted(p.name for p in series.iterdir()) == sorted(p.name for p in CT3.iterdir())


def test_deleted_source_and_other_grid_are_skipped_with_reasons(tmp_path, series):
    ds = RetrainingDataset.create(tmp_path / "ds", LABELS, modality="CT")
    ct = read_volume(series)
    gone = tmp_path / "src" / "gone_series"
    shutil.copytree(series, gone)
    shifted = Volume(array=ct.array + 1, spacing=ct.spacing, origin=np.asarray(ct.origin) + 5.0,
                     direction=np.asarray(ct.direction).copy(), modality=ct.modality)
    gone_id = ds.add_case(read_volume(gone), _mask(ct.shape), source_path=gone)
    off_id = ds.add_case(shifted, _mask(ct.shape), source_path=series, case_id="shifted")
    shutil.rmtree(gone)
    report = export_dicom_seg(ds, tmp_path / "out")
    by_id = {c.case_id: c for c in report.cases}
    assert by_id[gone_id].status == SOURCE_MISSING and str(gone) in by_id[gone_id].reason
    assert by_id[off_id].status == GEOMETRY_DIFFERS and "origin" in by_id[off_id].reason
    assert report.written == [] and report.any_dicom
    assert not (tmp_path / "out").exists()


def test_output_inside_a_source_series_is_refused(tmp_path, series):
    ds, *_ = _dataset_with_dicom_and_nifti(tmp_path / "ds", series)
    with pytest.raises(SegLoopError, match="inside the source DICOM series"):
        export_dicom_seg(ds, series / "segs")
    assert not (series / "segs").exists()


def test_cli_with_a_folder(tmp_path, series):
    ds, dicom_id, nifti_id, _ = _dataset_with_dicom_and_nifti(tmp_path / "ds", series)
    rc, out, err = cli("dataset", "export-seg", str(ds.folder), str(tmp_path / "out"))
    assert rc == 0, err
    assert f"{dicom_id}: written" in out and f"{nifti_id}: skipped, not DICOM" in out
    assert "1 DICOM SEG written" in out and "1 skipped" in out
    shutil.rmtree(series)
    rc, out, err = cli("dataset", "export-seg", str(ds.folder), str(tmp_path / "out2"))
    assert rc == 1 and f"{dicom_id}: skipped, source missing" in out and "no DICOM SEG was written" in err
    rc, out, err = cli("dataset", "export-seg", str(ds.folder), str(tmp_path / "out3"), "--project", "x")
    assert rc == 2 and "not both" in err


def test_cli_nothing_from_dicom_exits_zero(tmp_path):
    ds = RetrainingDataset.create(tmp_path / "ds", {1: "spleen"}, modality="CT")
    ds.add_case(read_volume(NIFTI / "image.nii.gz"), read_volume(NIFTI / "label.nii.gz"),
                source_path=NIFTI / "image.nii.gz")
    rc, out, _ = cli("dataset", "export-seg", str(ds.folder), str(tmp_path / "out"))
    assert rc == 0 and "no case of this dataset came from DICOM" in out
    assert not (tmp_path / "out").exists()


def test_cli_with_project(tmp_path, series):
    ct = read_volume(series)
    mask = _mask(ct.shape)
    label_file = write_mask(mask, ct, tmp_path / "label.nii.gz")
    assert cli("project", "create", "Seg Export", "--modality", "CT", "--labels", "1=liver,2=spine")[0] == 0
    rc, out, err = cli("dataset", "add", "--project", "Seg Export", "--image", str(series), "--label", str(label_file))
    assert rc == 0, err
    rc, out, err = cli("dataset", "export-seg", "--project", "seg export", str(tmp_path / "out"))
    assert rc == 0, err
    written = sorted((tmp_path / "out").glob("*.dcm"))
    assert len(written) == 1 and "1 DICOM SEG written" in out and "0 skipped" in out
    back = read_dicom_seg(written[0], ct)
    assert np.array_equal(back.array, mask)
    assert [(e.value, e.name) for e in back.labels] == [(1, "liver"), (2, "spine")]
    from unet_engine.cli.commands.targets import open_project

    colours = open_project("Seg Export").colours
    for e in back.labels:  # the project's label colours, through CIELab and back
        assert all(abs(a - b) <= 1 for a, b in zip(e.colour, colours[e.value])), (e.value, e.colour)


def test_dataset_add_records_the_source_as_an_absolute_path(tmp_path, monkeypatch):
    """A relative --image is recorded resolved, so an export from another folder finds it."""
    spleen = Path(__file__).parent / "data" / "io" / "ct_spleen_nifti"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(spleen / "image.nii.gz", work / "scan.nii.gz")
    shutil.copy(spleen / "label.nii.gz", work / "mask.nii.gz")
    monkeypatch.chdir(work)
    folder = tmp_path / "ds"
    assert main(["dataset", "create", str(folder), "--labels", "1=spleen"]) == 0
    assert main(["dataset", "add", str(folder), "--image", "scan.nii.gz", "--label", "mask.nii.gz"]) == 0
    case = RetrainingDataset(folder).cases()[0]
    assert case.source_path == str((work / "scan.nii.gz").resolve())
