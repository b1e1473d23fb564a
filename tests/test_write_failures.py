"""Failed saves (full disk, read-only folder, a file name too long) are clear errors and
never replace a good file: issue 18.

A full disk is simulated by making the image writer leave an empty or truncated file, as
ITK's writers do on ENOSPC (they print an error and do not raise).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import unet_engine.io.volume_io as io_mod
from unet_engine.io.atomic import atomic_write_bytes
from unet_engine.model.checkpoint import ModelCard, save_checkpoint
from unet_engine.cli.main import main
from unet_engine.errors import FileAccessError, SegLoopError, WriteFailedError
from unet_engine.io.volume_io import read_mask, read_volume, write_mask, write_volume
from unet_engine.model.network import ModelSpec, build_model
from unet_engine.volume import Volume

FORMATS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".mhd")
LONG = "a" * 300 + ".nii.gz"


def _scan() -> Volume:
    arr = np.linspace(0, 100, 6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)
    return Volume(array=arr, spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3))


def _mask(value: int = 1) -> np.ndarray:
    m = np.zeros((6, 10, 12), np.uint8)
    m[2:4, 3:7, 4:9] = value
    return m


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _empty_writer(image, tmp, **_kw):
    Path(tmp).write_bytes(b"")


def _truncating_writer(real):
    def write(image, tmp, **kw):
        real(image, tmp, **kw)
        tmp = Path(tmp)
        # .mhd writes a header and a data file into a temp folder of their own
        for f in tmp.parent.iterdir() if tmp.parent.name.endswith(".tmp") else [tmp]:
            data = f.read_bytes()
            f.write_bytes(data[: max(1, len(data) // 3)])
    return write


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_passes_the_checks(tmp_path, suffix):
    vol = _scan()
    out = write_mask(_mask(), vol, tmp_path / f"m{suffix}")
    assert np.array_equal(read_mask(out, vol), _mask())
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_write_volume_checks_pass_for_float_and_rgb(tmp_path):
    vol = _scan()
    assert np.array_equal(read_volume(write_volume(vol, tmp_path / "s.nii.gz")).array, vol.array)
    rgb = Volume(array=np.zeros((1, 5, 7, 3), np.uint8), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=np.eye(3))
    assert read_volume(write_volume(rgb, tmp_path / "rgb.nrrd")).array.shape[-1] == 3


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_failed_write_keeps_the_previous_mask(tmp_path, monkeypatch, suffix, how):
    vol = _scan()
    target = tmp_path / f"mask{suffix}"
    write_mask(_mask(1), vol, target)
    before = _snapshot(tmp_path)
    writer = _empty_writer if how == "empty" else _truncating_writer(io_mod.write_itk)
    monkeypatch.setattr(io_mod, "write_itk", writer)
    if how == "empty":
        monkeypatch.setattr(io_mod, "write_nifti", lambda array, like, tmp, description="": Path(tmp).write_bytes(b""))
    else:
        real_nifti = io_mod.write_nifti

        def short_nifti(array, like, tmp, description=""):
            real_nifti(array, like, tmp, description)
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[: len(data) // 2])

        monkeypatch.setattr(io_mod, "write_nifti", short_nifti)
    with pytest.raises(WriteFailedError) as info:
        write_mask(_mask(2), vol, target)
    message = str(info.value)
    assert str(tmp_path) in message and " free" in message
    assert isinstance(info.value, SegLoopError) and isinstance(info.value, OSError)
    assert _snapshot(tmp_path) == before  # byte-identical, and no temp files left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert np.array_equal(read_mask(target, vol), _mask(1))


def test_oserror_while_writing_is_a_write_failed_error(tmp_path, monkeypatch):
    vol = _scan()
    target = tmp_path / "mask.nrrd"
    write_mask(_mask(1), vol, target)
    before = _snapshot(tmp_path)

    def enospc(image, tmp, **_kw):
        Path(tmp).write_bytes(b"NRRD0004\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io_mod, "write_itk", enospc)
    with pytest.raises(WriteFailedError, match="No space left on device"):
        write_mask(_mask(2), vol, target)
    assert _snapshot(tmp_path) == before


def test_atomic_write_bytes_oserror_is_write_failed(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    target.write_bytes(b"good")

    def boom(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(WriteFailedError) as info:
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert "No space left on device" in str(info.value) and str(tmp_path) in str(info.value)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteFailedError) as info:
            write_mask(_mask(), _scan(), folder / "m.nrrd")
        assert str(folder) in str(info.value) and " free" in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_long_file_names_are_clear_errors(tmp_path):
    with pytest.raises(FileAccessError, match="File name too long") as info:
        read_volume(tmp_path / LONG)
    assert len(str(info.value)) < 300
    with pytest.raises(FileAccessError, match="File name too long"):
        read_mask(tmp_path / LONG, _scan())
    with pytest.raises(WriteFailedError, match="File name too long"):
        write_mask(_mask(), _scan(), tmp_path / LONG)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1, err  # progress lines aside
    return errors[0]


def test_cli_info_and_predict_long_name(tmp_path, capsys):
    assert main(["info", str(tmp_path / LONG)]) == 2
    assert "File name too long" in _one_line_error(capsys)
    assert main(["predict", str(tmp_path / LONG), str(tmp_path / "out.nii.gz")]) == 2
    assert "File name too long" in _one_line_error(capsys)


def test_cli_stray_oserror_is_one_line(monkeypatch, capsys):
    import unet_engine.cli.commands.info as info_cmd

    def boom(args):
        raise OSError(28, "No space left on device", "/some/where.nrrd")

    parser_run = info_cmd.run
    monkeypatch.setattr(info_cmd, "run", boom)
    try:
        assert main(["info", "x.nii.gz"]) == 2
    finally:
        monkeypatch.setattr(info_cmd, "run", parser_run)
    err = _one_line_error(capsys)
    assert "No space left on device" in err and "/some/where.nrrd" in err


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_predict_failing_writer(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    spec = ModelSpec(dims=2, base_width=4, depth=2)
    card = ModelCard(spec=spec, preprocessing={"mode": "mr"}, labels={0: "background", 1: "fg"}, name="tiny")
    model_dir = save_checkpoint(build_model(spec).eval(), card, tmp_path / "model")
    scan = tmp_path / "scan.nii.gz"
    write_volume(_scan(), scan)
    out = tmp_path / "out" / "pred.nii.gz"
    out.parent.mkdir()
    assert main(["predict", "--model", str(model_dir), str(scan), str(out), "--device", "cpu", "--threads", "1"]) == 0
    before = _snapshot(out.parent)
    capsys.readouterr()
    monkeypatch.setattr(io_mod, "write_nifti", lambda array, like, tmp, description="": Path(tmp).write_bytes(b""))
    monkeypatch.setattr(io_mod, "write_itk", _empty_writer)
    assert main(["predict", "--model", str(model_dir), str(scan), str(out), "--device", "cpu", "--threads", "1"]) == 2
    err = _one_line_error(capsys)
    assert str(out.parent) in err and " free" in err
    assert _snapshot(out.parent) == before  # the good mask (and its label file) kept, no temp files
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_nifti_with_a_good_header_but_short_data_is_refused(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    vol = Volume(array=rng.random((20, 64, 64), dtype=np.float32), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=np.eye(3))
    real_nifti = io_mod.write_nifti

    def short_data(array, like, tmp, description=""):
        real_nifti(array, like, tmp, description)
        data = Path(tmp).read_bytes()
        Path(tmp).write_bytes(data[: int(len(data) * 0.9)])  # the header is intact, the data is not

    monkeypatch.setattr(io_mod, "write_nifti", short_data)
    for suffix in (".nii.gz", ".nii"):
        with pytest.raises(WriteFailedError, match="incomplete|were written"):
            write_volume(vol, tmp_path / f"scan{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_refused_temp_file_is_write_failed(tmp_path, monkeypatch):
    """What a read-only folder does, also where tests run as root (which ignores chmod)."""
    import tempfile

    def refuse(*_a, **_kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    for suffix in (".nrrd", ".mhd"):
        with pytest.raises(WriteFailedError, match="Permission denied") as info:
            write_mask(_mask(), _scan(), tmp_path / f"m{suffix}")
        assert str(tmp_path) in str(info.value) and " free" in str(info.value)
    assert list(tmp_path.iterdir()) == []
