"""Rebuild the I/O test fixtures in this folder from ../shared/data/formats (run once).

    .venv/bin/python tests/data/io/make_fixtures.py [path/to/shared/data/formats]

Small files are copied byte for byte. Three are cropped to keep the repository small;
crops keep real voxels and exact geometry (nibabel's slicer / SimpleITK slicing move the
origin, nothing else) and the original header conventions (qform/sform codes, LAS).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[3] / "shared" / "data" / "formats"


def copy(rel: str) -> None:
    src, dst = SRC / rel, HERE / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    else:
        shutil.copyfile(src, dst)


def crop_nifti(rel: str, slicer: tuple[slice, ...]) -> None:
    img = nib.load(str(SRC / rel))
    out = img.slicer[slicer]
    q_code, s_code = int(img.header["qform_code"]), int(img.header["sform_code"])
    out.set_qform(out.affine if q_code else None, code=q_code)  # keep the source's form codes
    out.set_sform(out.affine if s_code else None, code=s_code)
    (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(HERE / rel))


def crop_nrrd(rel: str, i: slice, j: slice) -> None:
    img = sitk.ReadImage(str(SRC / rel))
    out = img[i, j, :]
    (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(HERE / rel), True)


def main() -> None:
    for rel in ("mri_spinalcord_nifti/image.nii.gz", "mri_spinalcord_nifti/label.nii.gz",
                "mri_breast_nrrd/image.nrrd", "mri_breast_nrrd/label.nrrd",
                "ct_dicom_3slice/series", "ct_dicom_3slice/label_liver_spine.nrrd",
                "mr_hippocampus_dicom/series"):
        copy(rel)
    spleen = (slice(14, 162), slice(23, 155), slice(3, 23))  # the spleen label's bounding box + 4 voxels
    crop_nifti("ct_spleen_nifti/image.nii.gz", spleen)
    crop_nifti("ct_spleen_nifti/label.nii.gz", spleen)
    crop_nrrd("mri_brain_nrrd/image.nrrd", slice(128, 256), slice(64, 192))  # around the labelled region
    crop_nrrd("mri_brain_nrrd/label.nrrd", slice(128, 256), slice(64, 192))
    crop_nifti("nifti_4d_fmri/image.nii.gz", (slice(40, 72), slice(32, 64), slice(6, 18), slice(None)))


if __name__ == "__main__":
    main()
