"""Filling a retraining dataset from elsewhere: an MSD task folder, or a copy of another dataset."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from unet_engine.data.dataset import RetrainingDataset, case_id_from_name
from unet_engine.errors import DatasetError

log = logging.getLogger(__name__)


def read_msd_meta(folder: str | Path) -> dict[str, Any]:
    """An MSD (or SegLoop) folder's ``dataset.json`` as an object, or {} when absent or unreadable."""
    try:
        meta = json.loads(Path(folder, "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def msd_labels(meta: dict[str, Any]) -> dict[int, str] | None:
    """The foreground labels a ``dataset.json`` names ({value: name}), or None when it has no label table."""
    if not isinstance(meta.get("labels"), dict):
        return None
    return {int(k): str(v) for k, v in meta["labels"].items() if str(k).isdigit() and int(k) != 0}


def msd_modality(meta: dict[str, Any]) -> str:
    """The modality text of a ``dataset.json``'s first channel ("" when it names none)."""
    mod = meta.get("modality")
    return str(mod.get("0", "")).strip() if isinstance(mod, dict) else ""


def import_msd(source: str | Path, dest: str | Path, *, labels: dict[int, str] | None = None,
               limit: int | None = None, names: list[str] | None = None, modality: str | None = None,
               model_version: str | None = None, skip_duplicates: bool = True,
               lock_timeout: float = 10.0) -> RetrainingDataset:
    """Build (or extend) the dataset at ``dest`` from an MSD task folder (imagesTr + labelsTr).

    Labels and modality come from the source's ``dataset.json`` when there is one, else
    from ``labels``/``modality`` (required then). ``names`` picks cases by file name
    (e.g. ``["hippocampus_001"]``), ``limit`` keeps the first N (sorted by name).
    """
    from unet_engine.io.volume_io import read_volume

    source, dest = Path(source), Path(dest)
    images_dir, labels_dir = source / "imagesTr", source / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise DatasetError("not an MSD task folder (needs imagesTr/ and labelsTr/)", source)
    src_meta = read_msd_meta(source)
    if labels is None:
        labels = msd_labels(src_meta)
    modality = modality or msd_modality(src_meta) or "MRI"
    if (dest / "dataset.json").exists():
        ds = RetrainingDataset(dest, lock_timeout=lock_timeout)
    else:
        if not labels:
            raise DatasetError("the source has no dataset.json with labels; pass labels (e.g. 1=anterior,2=posterior)", source)
        ds = RetrainingDataset.create(dest, labels, name=src_meta.get("name") or source.name, modality=modality,
                                      lock_timeout=lock_timeout)
    files = sorted(p for p in images_dir.iterdir() if p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith("."))
    if names is not None:
        wanted = {case_id_from_name(n) for n in names}
        files = [p for p in files if case_id_from_name(p.name) in wanted]
    if limit is not None:
        files = files[: int(limit)]
    for img_path in files:
        lab_path = labels_dir / img_path.name
        if not lab_path.exists():
            log.warning("no label for %s; skipped", img_path.name)
            continue
        image = read_volume(img_path)
        label = read_volume(lab_path)
        try:
            ds.add_case(image, label, model_version=model_version, source_path=img_path, case_id=case_id_from_name(img_path.name))
        except DatasetError as exc:
            if skip_duplicates and "already in the dataset" in str(exc):
                log.info("%s already present; skipped", img_path.name)
                continue
            raise
    return ds


def copy_dataset(src: RetrainingDataset, dest: str | Path) -> RetrainingDataset:
    """A full copy of ``src`` at ``dest`` (for experiments that must not touch the original)."""
    dest = Path(dest)
    if dest.exists():
        raise DatasetError("destination exists", dest)
    with src.locked():
        shutil.copytree(src.folder, dest, ignore=shutil.ignore_patterns(".segloop.lock", ".*.tmp*"))
    return RetrainingDataset(dest)
