"""Issue 18: memory limits, out-of-memory, unwritable outputs, library chatter, the GUI's
error path, and seeded random header mutations (each refused cleanly or read sanely).

Each case asserts a :class:`SegLoopError` whose one-line message names the file and the
problem; the CLI cases exit 2 with one line.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from unet_engine.io import checks as io_checks
from unet_engine.errors import ImageTooLargeError, SegLoopError, WriteFailedError
from unet_engine.io.volume_io import read_volume, write_mask

DATA = Path(__file__).parent / "data"
NIFTI = DATA / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
MODEL = Path(__file__).resolve().parents[1] / "unet_engine" / "resources" / "models" / "default"


def _raw_nii(**fields: object) -> bytes:
    raw = gzip.decompress(NIFTI.read_bytes())
    hdr = nib.Nifti1Header(binaryblock=raw[:348], check=False)
    for key, value in fields.items():
        name, _, idx = key.partition("[")
        if idx:
            arr = hdr[name].copy()
            arr[int(idx[:-1])] = value
            hdr[name] = arr
        else:
            hdr[key] = value
    return hdr.binaryblock + raw[348:]


def _sparse(tmp_path: Path, dims: tuple[int, int, int] = (1200, 1300, 1000)) -> Path:
    """A .nii of the full claimed length (sparse: no disk used) of int16 zeros."""
    out = tmp_path / "sparse.nii"
    with open(out, "wb") as fh:
        fh.write(_raw_nii(**{"dim[1]": dims[0], "dim[2]": dims[1], "dim[3]": dims[2], "datatype": 4,
                             "bitpix": 16})[:352])
        fh.truncate(352 + 2 * dims[0] * dims[1] * dims[2])
    return out


def _cli(args: list[str], mem_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if mem_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    code = "import sys; from unet_engine.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)


# ----- memory -----------------------------------------------------------------------------
def test_budget_follows_the_address_space_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with open("/proc/self/status") as fh:
        size = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (size + 2**30, resource.RLIM_INFINITY))
    room = io_checks.limit_headroom_bytes()
    assert room is not None and 0.9 * 2**30 < room <= 2**30
    assert io_checks.usable_memory_bytes() <= 0.8 * 2**30 + 1


def test_sparse_file_under_a_memory_limit_is_refused_before_allocating(tmp_path: Path) -> None:
    """3 GB of int16 voxels (fits RAM, not a 4 GiB ``ulimit -v``): one line, exit 2."""
    path = _sparse(tmp_path)
    res = _cli(["info", str(path)], mem_bytes=4 * 2**30)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "sparse.nii" in lines[0] and "memory" in lines[0] and "Traceback" not in res.stderr


def test_memory_error_while_reading_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import unet_engine.io.volume_io as io

    def boom(*_a: object, **_k: object) -> None:
        raise MemoryError
    monkeypatch.setattr(io, "_read_volume", boom)
    with pytest.raises(ImageTooLargeError, match="ran out of memory reading this image") as err:
        read_volume(NIFTI)
    assert NIFTI.name in str(err.value)


def test_gui_load_turns_memory_error_into_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop_app import io_jobs

    def boom(_a: object) -> None:
        raise MemoryError
    monkeypatch.setattr(io_jobs, "intensity_stats", boom)
    with pytest.raises(ImageTooLargeError, match="opening this scan") as err:
        io_jobs.load_scan(NIFTI)
    assert NIFTI.name in str(err.value)


# ----- outputs ----------------------------------------------------------------------------
def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    vol = read_volume(NIFTI)
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "mask.nii.gz"
    with pytest.raises(WriteFailedError) as err:
        write_mask(np.zeros(vol.shape, np.uint8), vol, target)
    assert "mask.nii.gz" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path: Path) -> None:
    vol = read_volume(NIFTI)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteFailedError) as err:
            write_mask(np.zeros(vol.shape, np.uint8), vol, folder / "mask.nii.gz")
        assert "mask.nii.gz" in str(err.value)
    finally:
        folder.chmod(0o755)


def test_predict_into_a_file_as_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = _cli(["predict", str(NIFTI), str(tmp_path / "afile" / "o.nii.gz"), "--model", str(MODEL),
                "--device", "cpu"])
    errors = [ln for ln in res.stderr.splitlines() if ": error:" in ln]
    assert res.returncode == 2 and len(errors) == 1 and "o.nii.gz" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


# ----- no C++ chatter where SegLoop explains ------------------------------------------------
def test_ignored_sform_gives_our_warning_not_itks(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "odd_sform.nii"
    path.write_bytes(_raw_nii(**{"srow_z[2]": 3.0}))
    with caplog.at_level(logging.WARNING):
        read_volume(path)
    assert "WARNING: In" not in capfd.readouterr().err
    assert any("qform" in r.getMessage() and "sform" in r.getMessage() for r in caplog.records)
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # restored for everything else


# ----- seeded random header mutations ----------------------------------------------------------
_VALUES = [0, -1, float("nan"), float("inf"), 1e38, 2**31 - 1, -(2**15), 3, 7, 0.5, 1e-30]
_NII_FIELDS = ["dim[0]", "dim[1]", "dim[2]", "dim[3]", "dim[4]", "datatype", "bitpix", "vox_offset", "pixdim[0]",
               "pixdim[1]", "pixdim[3]", "scl_slope", "scl_inter", "qform_code", "sform_code", "quatern_b",
               "quatern_d", "qoffset_y", "srow_x[0]", "srow_y[3]", "srow_z[2]", "intent_code"]
_INT_FIELDS = ("dim", "datatype", "bitpix", "qform_code", "sform_code", "intent_code")


def _nii_mutations(seed: int, n: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        f, v = rng.choice(_NII_FIELDS), rng.choice(_VALUES)
        if f.startswith(_INT_FIELDS):
            v = int(v) if np.isfinite(v) and abs(v) < 2**15 else 2**15 - 1
        out.append((f, v))
    return out


def _check_read_or_refused(path: Path) -> None:
    try:
        vol = read_volume(path)
    except SegLoopError as exc:
        assert path.name in str(exc) and "\n" not in str(exc), str(exc)
        return
    assert vol.array.size > 0 and all(np.isfinite(s) and s > 0 for s in vol.spacing)
    assert np.allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-3)
    if np.issubdtype(vol.array.dtype, np.floating):
        assert np.all(np.isfinite(vol.array))


@pytest.mark.parametrize("field, value", _nii_mutations(18, 40))
def test_random_nifti_header_mutation(tmp_path: Path, field: str, value: float) -> None:
    for gz in (False, True):
        data = _raw_nii(**{field: value})
        path = tmp_path / ("m.nii.gz" if gz else "m.nii")
        path.write_bytes(gzip.compress(data, 1) if gz else data)
        _check_read_or_refused(path)


_TEXT_EDITS = {".nrrd": [("sizes", "35 51 0"), ("sizes", "35 51 99999"), ("sizes", "35 51"), ("type", "double"),
                         ("type", "block"), ("space directions", "(0,0,0) (0,1,0) (0,0,1)"),
                         ("space directions", "(nan,0,0) (0,1,0) (0,0,1)"), ("encoding", "bzip2"),
                         ("encoding", "hex"), ("dimension", "4"), ("endian", "big")],
               ".mha": [("DimSize", "35 51 0"), ("DimSize", "35 51 3500"), ("ElementType", "MET_DOUBLE"),
                        ("ElementType", "MET_X"), ("ElementSpacing", "nan 1 1"), ("ElementSpacing", "-1 1 1"),
                        ("TransformMatrix", "1 0 0 1 0 0 0 0 1"), ("NDims", "4"), ("HeaderSize", "100000"),
                        ("CompressedData", "True"), ("BinaryDataByteOrderMSB", "True")]}


@pytest.mark.parametrize("suffix, key, value, named", [(".mha", "ElementType", "MET_X", "ElementType 'MET_X'"),
                                                        (".nrrd", "type", "quaternion", "type 'quaternion'")])
def test_an_unknown_voxel_type_is_named(tmp_path: Path, suffix: str, key: str, value: str, named: str) -> None:
    """The refusal names the header field and its value, not a guess about the pixel layout."""
    path = tmp_path / f"m{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(NIFTI)), str(path), useCompression=False)
    sep = ":" if suffix == ".nrrd" else " ="
    data = path.read_bytes()
    start = data.index(f"\n{key}{sep}".encode()) + 1
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + f"{key}{sep} {value}".encode() + data[end:])
    with pytest.raises(SegLoopError) as caught:
        read_volume(path)
    message = str(caught.value)
    assert path.name in message and named in message and "not a voxel type" in message


@pytest.mark.parametrize("suffix, key, value", [(s, k, v) for s, edits in _TEXT_EDITS.items() for k, v in edits])
def test_text_header_mutation(tmp_path: Path, suffix: str, key: str, value: str) -> None:
    path = tmp_path / f"m{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(NIFTI)), str(path), useCompression=False)
    data = path.read_bytes()
    sep = ":" if suffix == ".nrrd" else "="
    end = data.index(b"\n\n") + 1 if suffix == ".nrrd" else data.index(b"\n", data.index(b"ElementDataFile")) + 1
    lines = data[:end].decode("latin-1").split("\n")
    keys = [ln.split(sep, 1)[0].strip().lower() for ln in lines]
    new = f"{key}{sep} {value}"
    if key.lower() in keys:
        lines[keys.index(key.lower())] = new
    else:
        lines.insert(1, new)
    lines = [ln.encode("latin-1") for ln in lines]
    path.write_bytes(b"\n".join(lines) + data[end:])
    _check_read_or_refused(path)
