"""A kill during ``dataset add`` / ``remove`` leaves no orphan: the next open rolls the add back
(or finishes the removal), and the same case can be added again under the same id."""

from __future__ import annotations

import signal

import pytest

from tests.train_helpers import HIPPO, make_dataset, start_python
from unet_engine.data.dataset import RetrainingDataset
from unet_engine.data.journal import PENDING_NAME
from unet_engine.io.volume_io import read_volume


def _case(name: str):
    return read_volume(HIPPO / "imagesTr" / f"{name}.nii.gz"), read_volume(HIPPO / "labelsTr" / f"{name}.nii.gz").array


def _killed_during(ds: RetrainingDataset, patch: str) -> None:
    """Run an add of hippocampus_149 in a child that SIGKILLs itself at the point ``patch`` sets."""
    child = start_python(
        "import os, signal\n"
        "import unet_engine.io.volume_io as io\n"
        "from unet_engine.data.dataset import RetrainingDataset\n"
        "from tests.train_helpers import HIPPO\n"
        "def die(*a, **k):\n"
        "    print('dying', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"ds = RetrainingDataset({str(ds.folder)!r})\n"
        f"{patch}\n"
        "img = io.read_volume(HIPPO / 'imagesTr' / 'hippocampus_149.nii.gz')\n"
        "lab = io.read_volume(HIPPO / 'labelsTr' / 'hippocampus_149.nii.gz').array\n"
        "cid = ds.add_case(img, lab, source_path='hippocampus_149.nii.gz')\n"
        "ds.remove_case(cid)\n")
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert out.strip() == "dying"


def test_kill_between_image_and_label_write_is_rolled_back_on_open(tmp_path):
    ds = make_dataset(tmp_path, limit=2)
    _killed_during(ds, "io.write_mask = die")  # the image file is written, the label never is
    orphan = ds.folder / "imagesTr" / "hippocampus_149.nii.gz"
    assert orphan.is_file() and (ds.folder / PENDING_NAME).is_file()  # what a kill leaves behind
    again = RetrainingDataset(ds.folder)
    assert not orphan.exists() and not (ds.folder / PENDING_NAME).exists()
    assert again.orphan_files() == [] and len(again) == 2
    image, label = _case("hippocampus_149")
    assert again.add_case(image, label, source_path="hippocampus_149.nii.gz") == "hippocampus_149"
    assert again.orphan_files() == [] and len(again) == 3


def test_kill_during_the_label_write_leaves_no_orphan(tmp_path):
    ds = make_dataset(tmp_path, limit=2)
    # killed inside the atomic label write: a temp file and the finished image stay behind
    _killed_during(ds, "_replace = os.replace\n"
                       "os.replace = lambda a, b: die() if 'labelsTr' in str(b) else _replace(a, b)")
    assert (ds.folder / "imagesTr" / "hippocampus_149.nii.gz").is_file()
    assert not (ds.folder / "labelsTr" / "hippocampus_149.nii.gz").exists()
    assert list((ds.folder / "labelsTr").glob(".hippocampus_149*tmp*"))
    again = RetrainingDataset(ds.folder)
    assert again.orphan_files() == [] and [p for p in ds.folder.rglob(".*tmp*")] == []
    image, label = _case("hippocampus_149")
    assert again.add_case(image, label, source_path="hippocampus_149.nii.gz") == "hippocampus_149"


def test_kill_after_dataset_json_of_a_removal_is_finished_on_open(tmp_path):
    ds = make_dataset(tmp_path, limit=2)
    # the add completes; the removal is killed after it rewrote dataset.json, before deleting files
    _killed_during(ds, "from pathlib import Path\n"
                       "_unlink = Path.unlink\n"
                       "Path.unlink = lambda self, missing_ok=False: die() if 'hippocampus_149' in self.name "
                       "else _unlink(self, missing_ok=missing_ok)")
    assert (ds.folder / "imagesTr" / "hippocampus_149.nii.gz").is_file()
    again = RetrainingDataset(ds.folder)
    assert len(again) == 2 and again.orphan_files() == []


def test_a_failed_write_undoes_the_add_at_once(tmp_path, monkeypatch):
    import unet_engine.io.volume_io as io

    ds = make_dataset(tmp_path, limit=2)
    image, label = _case("hippocampus_149")

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_mask", full_disk)
    with pytest.raises(OSError):
        ds.add_case(image, label, source_path="hippocampus_149.nii.gz")
    monkeypatch.undo()
    assert ds.orphan_files() == [] and not (ds.folder / PENDING_NAME).exists() and len(ds) == 2
    assert ds.add_case(image, label, source_path="hippocampus_149.nii.gz") == "hippocampus_149"


def test_files_the_dataset_did_not_write_are_never_deleted(tmp_path):
    ds = make_dataset(tmp_path, limit=1)
    mine = [ds.folder / "imagesTr" / "user_copy.nii.gz", ds.folder / "labelsTr" / "notes.txt"]
    for p in mine:
        p.write_bytes(b"user data")
    # a damaged journal naming files outside the case folders is ignored
    (ds.folder / PENDING_NAME).write_text('{"op": "add", "id": "x", "files": ["../outside.nii.gz", '
                                          '"./imagesTr/../dataset.json", "./labelsTr/notes.txt"]}')
    (tmp_path / "outside.nii.gz").write_bytes(b"keep")
    RetrainingDataset(ds.folder)
    assert all(p.read_bytes() == b"user data" for p in mine) and (tmp_path / "outside.nii.gz").exists()
    assert (ds.folder / "dataset.json").is_file() and not (ds.folder / PENDING_NAME).exists()
