"""Export a retraining dataset as an nnU-Net v2 raw dataset.

Result (``nnUNet_raw`` layout)::

    DatasetNNN_Name/
      dataset.json        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, ...},
                           "numTraining": N, "file_ending": ".nii.gz", ...}
      imagesTr/<case>_0000.nii.gz
      labelsTr/<case>.nii.gz
      splits_final.json   SegLoop's fixed split as one fold ([{"train": [...], "val": [...]}]);
                          copy it to nnUNet_preprocessed/DatasetNNN_Name/ to train nnU-Net
                          on the same split (nnU-Net reads splits from there, not from raw)

Files are copied byte for byte (they are already NIfTI with geometry only). The folder is
built under a temporary name and renamed at the end, so a half export never looks
complete. nnU-Net requires consecutive label values (0, 1, 2, ...): a dataset with gaps
is refused with a clear message.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path

from unet_engine.io.atomic import atomic_write_json
from unet_engine.data.dataset import RetrainingDataset
from unet_engine.errors import DatasetError

log = logging.getLogger(__name__)


def nnunet_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise DatasetError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    clean = re.sub(r"[^A-Za-z0-9]+", "", name) or "SegLoop"
    return f"Dataset{int(dataset_id):03d}_{clean}"


def export_nnunet(dataset: RetrainingDataset, out_root: str | Path, *, dataset_id: int = 501, name: str | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``out_root/DatasetNNN_Name``; returns that folder."""
    out_root = Path(out_root)
    target = out_root / nnunet_folder_name(dataset_id, name or dataset.name)
    if target.exists() and not overwrite:
        raise DatasetError("the export folder exists; pass overwrite to replace it", target)
    labels = dataset.labels
    values = sorted(labels)
    if values != list(range(1, len(values) + 1)):
        raise DatasetError(f"nnU-Net needs consecutive label values 1..N; this dataset has {values}", dataset.folder)
    names = [labels[v] for v in values]
    if len(set(names)) != len(names) or "background" in names:
        raise DatasetError("nnU-Net needs unique label names other than 'background'", dataset.folder)
    cases = dataset.cases()
    if not cases:
        raise DatasetError("the dataset has no cases to export", dataset.folder)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        for c in cases:
            shutil.copyfile(dataset.image_path(c), tmp / "imagesTr" / f"{c.id}_0000.nii.gz")
            shutil.copyfile(dataset.label_path(c), tmp / "labelsTr" / f"{c.id}.nii.gz")
        atomic_write_json(tmp / "dataset.json", {
            "channel_names": {"0": dataset.modality},
            "labels": {"background": 0, **{labels[v]: v for v in values}},
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
            "name": target.name.split("_", 1)[1],
            "description": f"Exported by SegLoop from {dataset.folder}; the fixed train/val split is in "
                           "splits_final.json (copy it to nnUNet_preprocessed/<this dataset>/)",
            "licence": "see the source data's licence",
        })
        atomic_write_json(tmp / "splits_final.json", [{
            "train": [c.id for c in cases if c.split == "train"],
            "val": [c.id for c in cases if c.split == "val"],
        }])
        if target.exists():
            old = out_root / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %d cases to %s", len(cases), target)
    return target
