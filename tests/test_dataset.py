"""Retraining dataset: provenance, fixed split, duplicates, geometry, lock, crash safety, export."""

from __future__ import annotations

import gzip
import json
import math
import signal

import numpy as np
import pytest

from tests.train_helpers import (DATA, HIPPO, KILL_POINT_HOOK, LABELS, kill_at_marker, make_dataset, shifted_copy,
                                 start_python)
from unet_engine.data.dataset import RetrainingDataset, assign_split, content_hash
from unet_engine.errors import DatasetError, GeometryMismatchError
from unet_engine.io.volume_io import read_volume
from unet_engine.volume import Volume


def _case(name: str):
    image = read_volume(HIPPO / "imagesTr" / f"{name}.nii.gz")
    label = read_volume(HIPPO / "labelsTr" / f"{name}.nii.gz").array
    return image, label


def test_import_msd_layout_and_provenance(tmp_path):
    ds = make_dataset(tmp_path)
    meta = json.loads((ds.folder / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "anterior", "2": "posterior"}
    assert meta["numTraining"] == len(meta["training"]) == 8
    cases = ds.cases()
    assert {c.split for c in cases} == {"train", "val"}
    assert len(ds.val_cases()) == 2 and len(ds.train_cases()) == 6  # 20 % of 8, rounded by the quota rule
    for c in cases:
        assert c.hash.startswith("sha256:") and len(c.hash) == 71
        assert c.source_path.endswith(f"{c.id}.nii.gz")
        assert ds.image_path(c).is_file() and ds.label_path(c).is_file()
        assert c.image == f"./imagesTr/{c.id}.nii.gz" and c.added
    image, label, edits = ds.load_case(cases[0].id)
    src_image, src_label = _case(cases[0].id)
    assert edits is None and image.same_geometry(src_image)
    np.testing.assert_array_equal(image.array, src_image.array)
    np.testing.assert_array_equal(label, src_label)
    assert set(cases[0].label_voxels) == {"1", "2"}


def test_add_case_with_edits_and_reviewer(tmp_path):
    ds = RetrainingDataset.create(tmp_path / "ds", labels=LABELS)
    image, label = _case("hippocampus_001")
    edited = np.zeros(image.shape, bool)
    edited[10:12, 20:25, 15:18] = True
    cid = ds.add_case(image, label, edited=edited, model_version="v0003", reviewer="Dr. Test",
                      source_path="/scans/patient_x.nii.gz")
    c = ds.get(cid)
    assert (c.model_version, c.reviewer, c.source_path) == ("v0003", "Dr. Test", "/scans/patient_x.nii.gz")
    assert c.edits == f"./editsTr/{cid}.nii.gz" and c.split == "train"  # the first case always trains
    _, lab, ed = ds.load_case(cid)
    np.testing.assert_array_equal(ed, edited)
    np.testing.assert_array_equal(lab, label)
    ds.update_case(cid, reviewer="Dr. Other")
    assert ds.get(cid).reviewer == "Dr. Other" and ds.get(cid).updated


def test_duplicates_refused_or_replaced(tmp_path):
    ds = make_dataset(tmp_path, limit=5)
    image, label = _case("hippocampus_148")
    before = ds.get("hippocampus_148")
    with pytest.raises(DatasetError, match="already in the dataset as case 'hippocampus_148'"):
        ds.add_case(image, label)
    as_float = Volume(image.array.astype(np.float64), image.spacing, image.origin, image.direction)
    with pytest.raises(DatasetError, match="already in the dataset"):  # same values, other dtype: same scan
        ds.add_case(as_float, label)
    new_label = label.copy()
    new_label[new_label == 2] = 1
    cid = ds.add_case(image, new_label, replace=True, reviewer="R")
    after = ds.get(cid)
    assert cid == before.id and after.split == before.split and after.hash == before.hash
    assert len(ds) == 5 and after.updated and after.reviewer == "R"
    np.testing.assert_array_equal(ds.load_case(cid)[1], new_label)


def test_content_hash_same_scan_from_dicom_and_nifti(tmp_path):
    series = DATA / "io" / "mr_hippocampus_dicom" / "series"
    if not series.is_dir():
        pytest.skip("DICOM fixture missing")
    import nibabel as nib

    from unet_engine.io.volume_io import write_volume

    dicom = read_volume(series)
    write_volume(Volume(dicom.array, dicom.spacing, dicom.origin, dicom.direction), tmp_path / "lps.nii.gz")
    nifti = read_volume(tmp_path / "lps.nii.gz")
    nib.save(nib.as_closest_canonical(nib.load(tmp_path / "lps.nii.gz")), tmp_path / "ras.nii.gz")
    ras = read_volume(tmp_path / "ras.nii.gz")  # axes flipped on disk: same scan
    assert ras.orientation_code() != dicom.orientation_code()
    assert content_hash(dicom) == content_hash(nifti) == content_hash(ras)
    assert content_hash(shifted_copy(dicom, 1.0)) != content_hash(dicom)
    moved = Volume(dicom.array, dicom.spacing, (dicom.origin[0] + 1.0, *dicom.origin[1:]), dicom.direction)
    assert content_hash(moved) != content_hash(dicom)

    # stored copies keep no DICOM header: the NIfTI holds none of the patient tags
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(sorted(series.iterdir())[0]))
    reader.ReadImageInformation()
    tags = [reader.GetMetaData(k).strip() for k in ("0010|0010", "0010|0020") if reader.HasMetaDataKey(k)]
    ds = RetrainingDataset.create(tmp_path / "ds", labels=LABELS)
    cid = ds.add_case(dicom, np.zeros(dicom.shape, np.uint8))
    raw = gzip.decompress(ds.image_path(cid).read_bytes())
    assert raw[344:348] in (b"n+1\x00", b"ni1\x00")  # a NIfTI-1 file
    for value in tags:
        if len(value) >= 3:
            assert value.encode() not in raw


def test_geometry_mismatch_and_bad_labels_refused(tmp_path):
    ds = RetrainingDataset.create(tmp_path / "ds", labels=LABELS)
    image, label = _case("hippocampus_001")
    with pytest.raises(GeometryMismatchError, match="shape"):
        ds.add_case(image, label[:-1])
    other = Volume(label, spacing=(1.0, 1.0, 2.0), origin=image.origin, direction=image.direction)
    with pytest.raises(GeometryMismatchError, match="spacing"):
        ds.add_case(image, other)
    with pytest.raises(GeometryMismatchError, match="edited-voxel mask"):
        ds.add_case(image, label, edited=np.zeros((3, 3, 3), bool))
    bad = label.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(DatasetError, match=r"values \[7\]"):
        ds.add_case(image, bad)
    assert len(ds) == 0 and not list((ds.folder / "imagesTr").iterdir())


def test_validation_split_never_reshuffled(tmp_path):
    ds = make_dataset(tmp_path)
    splits = {c.id: c.split for c in ds.cases()}
    base, label = _case("hippocampus_001")
    for k in range(6):  # new scans join; nobody moves
        ds.add_case(shifted_copy(base, float(k + 1)), label, source_path=f"new_{k}.nii.gz")
        assert {c.id: c.split for c in ds.cases() if c.id in splits} == splits
    ds.remove_case(ds.val_cases()[0].id)
    ds.remove_case("hippocampus_221")
    again = RetrainingDataset(ds.folder)
    assert all(splits[c.id] == c.split for c in again.cases() if c.id in splits)
    assert len(again.val_cases()) >= 2


def test_split_rule_keeps_the_target_ratio():
    import hashlib

    n_val = 0
    for n in range(1, 301):
        digest = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
        n_val += assign_split(digest, n, n_val, 0.2) == "val"
        lo = max(math.floor(0.2 * n), 1 if n >= 3 else 0)
        assert lo <= n_val <= max(math.ceil(0.2 * n), lo)


def test_lock_refuses_a_second_writer(tmp_path):
    ds = make_dataset(tmp_path, limit=2)
    holder = start_python(
        "import sys, time\n"
        "from unet_engine.data.dataset import RetrainingDataset\n"
        f"ds = RetrainingDataset({str(ds.folder)!r})\n"
        "with ds.locked():\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n")
    try:
        assert holder.stdout.readline().strip() == "locked"
        image, label = _case("hippocampus_149")
        busy = RetrainingDataset(ds.folder, lock_timeout=0.3)
        with pytest.raises(DatasetError, match=r"in use by another SegLoop instance \(lock file .*\.segloop\.lock\)"):
            busy.add_case(image, label)
        with pytest.raises(DatasetError, match="in use"):
            busy.remove_case("hippocampus_001")
        assert len(busy) == 2
    finally:
        holder.kill()  # the OS releases the lock of a killed process
        holder.wait()
    busy.add_case(image, label)
    assert len(busy) == 3


# (the loop's iteration k, add or remove, the write to stop at); the dataset.json the kill leaves
# behind lists ``listed`` cases and the next open must show exactly those
@pytest.mark.parametrize("k, phase, target, listed", [
    (3, "add", "imagesTr", 4),  # the new case's image is in a temp file, not renamed: the add is rolled back
    (4, "remove", "dataset.json", 6),  # the removal's dataset.json is not renamed: the case stays
])
def test_kill9_during_writes_leaves_dataset_readable(tmp_path, k, phase, target, listed):
    ds = make_dataset(tmp_path, limit=3)
    writer = start_python(
        KILL_POINT_HOOK +
        "import os\n"
        "from tests.train_helpers import HIPPO, shifted_copy\n"
        "from unet_engine.data.dataset import RetrainingDataset\n"
        "from unet_engine.io.volume_io import read_volume\n"
        f"ds = RetrainingDataset({str(ds.folder)!r})\n"
        "img = read_volume(HIPPO / 'imagesTr' / 'hippocampus_001.nii.gz')\n"
        "lab = read_volume(HIPPO / 'labelsTr' / 'hippocampus_001.nii.gz').array\n"
        "now = {'k': 0, 'phase': ''}\n"
        "_replace = os.replace\n"
        "def replace(src, dst, *a, **kw):\n"
        f"    if (now['k'], now['phase']) == ({k}, {phase!r}) and {target!r} in os.fspath(dst):\n"
        "        kill_point(f'{now} {len(ds)}')\n"
        "    return _replace(src, dst, *a, **kw)\n"
        "os.replace = replace\n"
        "while True:\n"
        "    now['k'] += 1\n"
        "    now['phase'] = 'add'\n"
        "    cid = ds.add_case(shifted_copy(img, now['k']), lab, source_path=f\"n{now['k'] % 3}.nii.gz\")\n"
        "    print(cid, flush=True)\n"
        "    if now['k'] % 2 == 0:\n"
        "        now['phase'] = 'remove'\n"
        "        ds.remove_case(cid)\n")
    lines = kill_at_marker(writer)
    assert lines[-1].endswith(f"{listed}") and f"'k': {k}" in lines[-1], lines
    assert writer.returncode == -signal.SIGKILL
    again = RetrainingDataset(ds.folder)
    assert len(again) == listed
    for c in again.cases():
        image, label, _ = again.load_case(c)
        assert label.shape == image.shape
    assert {c.id for c in again.cases()} >= {"hippocampus_001", "hippocampus_003", "hippocampus_148"}
    assert again.orphan_files() == [] and [p for p in ds.folder.rglob(".*tmp*")] == []  # nothing half-written left


def test_export_nnunet(tmp_path):
    from unet_engine.data.nnunet_export import export_nnunet

    ds = make_dataset(tmp_path, limit=4)
    out = export_nnunet(ds, tmp_path / "nnUNet_raw", dataset_id=4, name="Hippocampus")
    assert out.name == "Dataset004_Hippocampus"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "MRI"}
    assert meta["labels"] == {"background": 0, "anterior": 1, "posterior": 2}
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".nii.gz"
    images = sorted(p.name for p in (out / "imagesTr").iterdir())
    labels = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert images == [f"{c.id}_0000.nii.gz" for c in sorted(ds.cases(), key=lambda c: c.id)]
    assert labels == [f"{c.id}.nii.gz" for c in sorted(ds.cases(), key=lambda c: c.id)]
    split = json.loads((out / "splits_final.json").read_text())[0]
    assert sorted(split["train"] + split["val"]) == sorted(c.id for c in ds.cases())
    lab = read_volume(out / "labelsTr" / labels[0])
    np.testing.assert_array_equal(lab.array, ds.load_case(labels[0][:-7])[1])
    with pytest.raises(DatasetError, match="exists"):
        export_nnunet(ds, tmp_path / "nnUNet_raw", dataset_id=4, name="Hippocampus")


def test_stale_temp_files_of_a_killed_writer_are_removed_on_open(tmp_path):
    ds = make_dataset(tmp_path, limit=1)
    stale = ds.folder / "imagesTr" / ".hippocampus_999.nii.gz.k3j2.tmp.nii.gz"
    stale.write_bytes(b"half a file")
    # another instance holding the lock may be mid-write: its temp files are left alone
    with ds.locked():
        import threading

        seen: list[bool] = []
        t = threading.Thread(target=lambda: (RetrainingDataset(ds.folder), seen.append(stale.exists())))
        t.start()
        t.join()
        assert seen == [True]
    RetrainingDataset(ds.folder)
    assert not stale.exists()
    assert ds.orphan_files() == []
