"""Helpers for the volume I/O tests (imported by tests/test_io_*.py; not a pytest conftest).

The reference readers here deliberately avoid SegLoop's code: SimpleITK and nibabel are
called directly, and a written NRRD header is read with a few lines of text handling so
its geometry is checked by something other than the library that wrote it.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

FIXTURES = Path(__file__).parent / "data" / "io"
TOL_MM = 1e-4

#: name -> (image path, label path or None), all under FIXTURES
CASES: dict[str, tuple[str, str | None]] = {
    "ct_spleen_nifti": ("ct_spleen_nifti/image.nii.gz", "ct_spleen_nifti/label.nii.gz"),
    "mri_spinalcord_nifti": ("mri_spinalcord_nifti/image.nii.gz", "mri_spinalcord_nifti/label.nii.gz"),
    "mri_brain_nrrd": ("mri_brain_nrrd/image.nrrd", "mri_brain_nrrd/label.nrrd"),
    "mri_breast_nrrd": ("mri_breast_nrrd/image.nrrd", "mri_breast_nrrd/label.nrrd"),
    "ct_dicom_3slice": ("ct_dicom_3slice/series", "ct_dicom_3slice/label_liver_spine.nrrd"),
    "mr_hippocampus_dicom": ("mr_hippocampus_dicom/series", None),
}


def itk_world(image: sitk.Image, kji: np.ndarray) -> np.ndarray:
    """LPS world (mm) of voxel indices ``[k, j, i]`` from a SimpleITK image's own geometry."""
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    m = d @ np.diag(image.GetSpacing())
    return np.asarray(kji, dtype=np.float64)[:, ::-1] @ m.T + np.asarray(image.GetOrigin())


def nib_world(affine: np.ndarray, kji: np.ndarray) -> np.ndarray:
    """LPS world (mm) of voxel indices ``[k, j, i]`` from a nibabel (RAS) affine."""
    ijk1 = np.c_[np.asarray(kji, dtype=np.float64)[:, ::-1], np.ones(len(kji))]
    ras = ijk1 @ np.asarray(affine, dtype=np.float64).T
    return ras[:, :3] * np.array([-1.0, -1.0, 1.0])


def reference_image(rel: str) -> sitk.Image:
    """A fixture read by SimpleITK alone (a DICOM folder through GDCM's own file order)."""
    path = FIXTURES / rel
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def reference_world(rel: str, kji: np.ndarray) -> np.ndarray:
    """World (LPS mm) of voxels of a fixture per its reference reader (nibabel for NIfTI)."""
    if rel.endswith((".nii", ".nii.gz")):
        return nib_world(nib.load(str(FIXTURES / rel)).affine, kji)
    return itk_world(reference_image(rel), kji)


def read_nrrd_plain(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """Header fields and voxels ``[k, j, i]`` of a single-file NRRD (raw or gzip)."""
    blob = path.read_bytes()
    head, _, body = blob.partition(b"\n\n")
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines()[1:]:
        if line.startswith("#"):
            continue
        if ":=" in line:
            key, _, value = line.partition(":=")
        else:
            key, _, value = line.partition(": ")
        fields[key.strip()] = value.strip()
    sizes = [int(s) for s in fields["sizes"].split()]
    dtypes = {"unsigned char": np.uint8, "uchar": np.uint8, "uint8": np.uint8, "unsigned short": np.uint16,
              "ushort": np.uint16, "uint16": np.uint16, "short": np.int16, "int16": np.int16}
    dtype = np.dtype(dtypes[fields["type"]]).newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    if fields["encoding"] in ("gzip", "gz"):
        body = gzip.decompress(body)
    data = np.frombuffer(body, dtype=dtype, count=int(np.prod(sizes))).reshape(sizes[::-1])
    return fields, data


def nrrd_world(fields: dict[str, str], kji: np.ndarray) -> np.ndarray:
    """World (LPS mm) of voxels per an NRRD header's ``space directions`` / ``space origin``."""
    assert fields["space"] in ("left-posterior-superior", "LPS")
    vecs = [[float(x) for x in v.strip("()").split(",")] for v in fields["space directions"].split()]
    origin = np.array([float(x) for x in fields["space origin"].strip("()").split(",")])
    m = np.array(vecs).T  # columns: world step of i, j, k
    return np.asarray(kji, dtype=np.float64)[:, ::-1] @ m.T + origin


def box_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """An asymmetric test mask: label 1 in a box near [0,0,0], 2 near the far corner, 3 a
    single voxel, so any flip or axis swap shows."""
    m = np.zeros(shape, dtype=np.uint8)
    nk, nj, ni = shape
    m[: max(1, nk // 3), 1: max(2, nj // 4), 2: max(3, ni // 3)] = 1
    m[nk - 1, nj - max(2, nj // 5):, ni - max(2, ni // 6):] = 2
    m[nk // 2, nj // 2, ni // 2 + 1 if ni > 2 else 0] = 3
    return m


def copy_fixture(rel: str, dest: Path) -> Path:
    src = FIXTURES / rel
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return dest


def entries(folder: Path) -> set[str]:
    """Names in ``folder`` (hidden temp files included)."""
    return {p.name for p in folder.iterdir()}
