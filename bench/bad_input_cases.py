"""Bad inputs for ``bench/bad_input_sweep.py``, derived from real files.

Every builder writes into a folder it is given (a temp folder, never the repository) and
returns the path to open. Sources: ``tests/data`` (hippocampus MRI, cropped CT/MR, DICOM
series) and ``../shared/data/formats`` (the DICOM SEG beside the CT series). ``expect`` is
"error" (must be refused), "ok" (must be read) or "either" (a valid file may result).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "data"
SHARED = REPO.parent / "shared" / "data" / "formats"
HIPPO = TESTS / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
SPLEEN = TESTS / "io" / "ct_spleen_nifti" / "image.nii.gz"
BRAIN_NRRD = TESTS / "io" / "mri_brain_nrrd" / "image.nrrd"
MR_DICOM = TESTS / "io" / "mr_hippocampus_dicom" / "series"
CT_DICOM = TESTS / "io" / "ct_dicom_3slice" / "series"
MODEL = REPO / "unet_engine" / "resources" / "models" / "default"
sitk.ProcessObject.SetGlobalWarningDisplay(False)  # building copies: ITK's writer notes are noise


@dataclass
class Case:
    name: str
    cls: str
    build: Callable[[Path], Path]
    expect: str = "error"
    kind: str = "scan"  # scan | model | output
    check: Callable[[dict], str | None] | None = None  # on a successful read: None, or what is wrong
    extra: dict = field(default_factory=dict)


# ----- helpers -------------------------------------------------------------------------------
def _nii_bytes(src: Path = HIPPO) -> bytes:
    return gzip.decompress(src.read_bytes()) if src.name.endswith(".gz") else src.read_bytes()


def _patch_nii(raw: bytes, **fields: object) -> bytes:
    hdr = nib.Nifti1Header(binaryblock=raw[:348], check=False)
    for key, value in fields.items():
        if "[" in key:
            name, idx = key[:-1].split("[")
            arr = hdr[name].copy()
            arr[int(idx)] = value
            hdr[name] = arr
        else:
            hdr[key] = value
    return hdr.binaryblock + raw[348:]


def nii(name: str, gz: bool = False, src: Path = HIPPO, **fields: object) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        data = _patch_nii(_nii_bytes(src), **fields)
        out = d / (name + (".nii.gz" if gz else ".nii"))
        out.write_bytes(gzip.compress(data, 1) if gz else data)
        return out
    return build


def nii_array(name: str, make: Callable[[np.ndarray], np.ndarray], **fields: object) -> Callable[[Path], Path]:
    """A NIfTI holding ``make(hippocampus voxels)`` on the hippocampus grid."""
    def build(d: Path) -> Path:
        img = nib.load(str(HIPPO))
        arr = make(np.asanyarray(img.dataobj))
        out = d / f"{name}.nii"
        hdr = img.header.copy()
        hdr.set_data_dtype(arr.dtype)
        nib.save(nib.Nifti1Image(arr, img.affine, hdr), str(out))
        if fields:
            out.write_bytes(_patch_nii(out.read_bytes(), **fields))
        return out
    return build


def itk_copy(d: Path, name: str, suffix: str, compress: bool, src: Path = HIPPO) -> Path:
    out = d / f"{name}{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(src)), str(out), useCompression=compress)
    return out


def _split_header(data: bytes, fmt: str) -> tuple[list[str], bytes]:
    lines, pos = [], 0
    while True:
        end = data.index(b"\n", pos)
        line = data[pos:end].decode("latin-1")
        pos = end + 1
        if fmt == "nrrd" and line == "":
            return lines, data[pos:]
        lines.append(line)
        if fmt == "mha" and line.startswith("ElementDataFile"):
            return lines, data[pos:]


def _join_header(lines: list[str], body: bytes, fmt: str) -> bytes:
    text = "\n".join(lines) + "\n" + ("\n" if fmt == "nrrd" else "")
    return text.encode("latin-1") + body


def text_header(name: str, suffix: str, compress: bool, edits: dict[str, str | None], src: Path = HIPPO,
                body: Callable[[bytes], bytes] | None = None) -> Callable[[Path], Path]:
    """An NRRD (.nrrd) or MetaImage (.mha) copy of ``src`` with header lines replaced
    (``None`` removes the line) and optionally the data block changed."""
    fmt = "nrrd" if suffix == ".nrrd" else "mha"
    sep = ":" if fmt == "nrrd" else "="

    def build(d: Path) -> Path:
        out = itk_copy(d, name, suffix, compress, src)
        lines, data = _split_header(out.read_bytes(), fmt)
        keys = [ln.split(sep, 1)[0].strip().lower() for ln in lines]
        for key, value in edits.items():
            k = key.lower()
            if k in keys:
                i = keys.index(k)
                if value is None:
                    del lines[i], keys[i]
                else:
                    lines[i] = f"{key}{sep} {value}" if fmt == "nrrd" else f"{key} = {value}"
            elif value is not None:
                pos = len(lines) - (1 if fmt == "mha" else 0)
                lines.insert(pos, f"{key}{sep} {value}" if fmt == "nrrd" else f"{key} = {value}")
        out.write_bytes(_join_header(lines, body(data) if body else data, fmt))
        return out
    return build


def truncate(src_build: Callable[[Path], Path], keep: float | int) -> Callable[[Path], Path]:
    """``src_build``'s file cut to ``keep`` bytes (int) or that share of its length (float)."""
    def build(d: Path) -> Path:
        p = src_build(d)
        data = p.read_bytes()
        n = keep if isinstance(keep, int) else int(len(data) * keep)
        p.write_bytes(data[:n])
        return p
    return build


def dicom_series(name: str, mutate: Callable[[pydicom.Dataset, int], None] | None = None, src: Path = MR_DICOM,
                 only: int | None = None, extra: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    """A copy of a DICOM series folder, each file (or file ``only``) changed by ``mutate``."""
    def build(d: Path) -> Path:
        out = d / name
        shutil.copytree(src, out)
        files = sorted(out.iterdir(), key=lambda p: p.name)
        for n, f in enumerate(files):
            if mutate is not None and (only is None or n == only):
                ds = pydicom.dcmread(f)
                mutate(ds, n)
                ds.save_as(f)
        if extra is not None:
            extra(out)
        return out
    return build


def dicom_file(name: str, mutate: Callable[[pydicom.Dataset, int], None], src: Path = MR_DICOM) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        out = d / f"{name}.dcm"
        ds = pydicom.dcmread(sorted(src.iterdir())[0])
        mutate(ds, 0)
        ds.save_as(out)
        return out
    return build


def setattrs(**values: object) -> Callable[[pydicom.Dataset, int], None]:
    def mutate(ds: pydicom.Dataset, _n: int) -> None:
        for k, v in values.items():
            setattr(ds, k, v)
    return mutate


def cut_pixels(share: float) -> Callable[[pydicom.Dataset, int], None]:
    def mutate(ds: pydicom.Dataset, _n: int) -> None:
        ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * share) // 2 * 2]
    return mutate


def cut_file(src_build: Callable[[Path], Path], index: int, keep: float) -> Callable[[Path], Path]:
    """A DICOM folder whose file ``index`` is cut to ``keep`` of its length."""
    def build(d: Path) -> Path:
        folder = src_build(d)
        f = sorted(folder.iterdir(), key=lambda p: p.name)[index]
        data = f.read_bytes()
        f.write_bytes(data[: int(len(data) * keep)])
        return folder
    return build


def claimed(name: str, dims: tuple[int, int, int], datatype: int, bitpix: int, gz_members: int = 0,
            sparse: bool = False) -> Callable[[Path], Path]:
    """A NIfTI whose header claims ``dims``: a small .nii.gz, a multi-member .nii.gz of zeros
    (``gz_members`` x 16 MiB), or a sparse .nii of the full length."""
    def build(d: Path) -> Path:
        raw = _patch_nii(_nii_bytes(), **{"dim[1]": dims[0], "dim[2]": dims[1], "dim[3]": dims[2],
                                          "datatype": datatype, "bitpix": bitpix})
        header = raw[:352]
        if sparse:
            out = d / f"{name}.nii"
            with open(out, "wb") as fh:
                fh.write(header)
                fh.truncate(352 + dims[0] * dims[1] * dims[2] * bitpix // 8)
            return out
        out = d / f"{name}.nii.gz"
        if gz_members:
            zeros = gzip.compress(bytes(16 << 20), 9)
            with open(out, "wb") as fh:
                fh.write(gzip.compress(header, 9))
                for _ in range(gz_members):
                    fh.write(zeros)
        else:
            out.write_bytes(gzip.compress(raw, 6))
        return out
    return build


def model(name: str, card_edit: Callable[[dict], None] | None = None,
          weights: Callable[[Path], None] | None = None, card_raw: Callable[[Path], None] | None = None
          ) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        out = d / name
        shutil.copytree(MODEL, out)
        if card_edit is not None:
            card = json.loads((out / "card.json").read_text())
            card_edit(card)
            (out / "card.json").write_text(json.dumps(card))
        if card_raw is not None:
            card_raw(out / "card.json")
        if weights is not None:
            weights(out / "model.safetensors")
        return out
    return build


def nested(depth: int) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        text = p.read_text()
        p.write_text(text[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}")
    return write


def nested_objects(depth: int) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        card = json.loads(p.read_text())
        card["notes"] = "@@"
        p.write_text(json.dumps(card).replace('"@@"', '{"a": ' * depth + "1" + "}" * depth))
    return write


def replace_with(kind: str) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "zero":
            os.symlink("/dev/zero", p)
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "half":
            p.write_bytes((MODEL / p.name).read_bytes()[: (MODEL / p.name).stat().st_size // 2])
        elif kind == "hugeheader":
            p.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    return make


def fifo(name: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        os.mkfifo(d / name)
        return d / name
    return build


def symlink(name: str, target: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        os.symlink(target, d / name)
        return d / name
    return build


def mkdir(name: str, with_file: bool = False) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).mkdir()
        if with_file:
            (d / name / "notes.txt").write_text("not dicom")
        return d / name
    return build


def plain(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return build


def path_only(rel: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / "image.nii.gz").write_bytes(HIPPO.read_bytes())
        return d / rel
    return build


def same_as_source(src: Path = HIPPO) -> Callable[[dict], str | None]:
    arr = np.asanyarray(nib.load(str(src)).dataobj)
    want = (list(arr.shape[::-1]), float(arr.min()), float(arr.max()))

    def check(info: dict) -> str | None:
        got = (info.get("shape_kji"), info.get("min"), info.get("max"))
        return None if got == want else f"shape/min/max {got} instead of {want}"
    return check


def shape_is(shape: list[int], modality: str | None = None) -> Callable[[dict], str | None]:
    def check(info: dict) -> str | None:
        if info.get("shape_kji", [])[:3] != shape:
            return f"shape {info.get('shape_kji')} instead of {shape}"
        if modality and info.get("modality") != modality:
            return f"modality {info.get('modality')} instead of {modality}"
        return None
    return check


def nrrd_from(d: Path, name: str, src: Path, make: Callable[[np.ndarray], np.ndarray]) -> Path:
    img = sitk.ReadImage(str(src))
    arr = make(sitk.GetArrayFromImage(img).astype(np.float64))
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(d / f"{name}.nrrd"), useCompression=True)
    return d / f"{name}.nrrd"
