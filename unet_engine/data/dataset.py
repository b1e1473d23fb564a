"""The retraining dataset: corrected cases on disk, with provenance and a fixed split.

Layout (Medical Segmentation Decathlon style, so nnU-Net / MONAI tools read it)::

    folder/
      dataset.json          labels, modality, and one entry per case (below)
      imagesTr/<id>.nii.gz  the scan: voxels + geometry only
      labelsTr/<id>.nii.gz  the corrected label map (uint8/uint16, same grid)
      editsTr/<id>.nii.gz   1 where the reviewer changed the model's prediction (optional)
      .segloop.lock         inter-process write lock (see :mod:`unet_engine.data.lock`)
      .segloop-pending.json only while a case is added or removed (see "Crash safety")

Each entry of ``dataset.json["training"]`` holds the MSD keys ``image`` and ``label``
plus SegLoop's provenance: ``id``, ``hash``, ``split`` ("train"/"val"), ``edits``,
``model_version`` (the model whose prediction was corrected), ``reviewer``,
``source_path``, ``added`` (UTC ISO time), ``shape``, ``spacing`` and ``label_voxels``.

Privacy: only the voxel array and its geometry are stored. Images are re-written as
NIfTI through :func:`unet_engine.io.volume_io.write_volume`, which has no place for DICOM tags, so
patient name, IDs, dates and every other header field are dropped. The provenance keeps
``source_path`` (the file or folder the case came from) and the reviewer name if given;
leave them out (``None``) when the path itself would identify the patient.

Case identity (:func:`unet_engine.data.case_identity.content_hash`): a SHA-256 over the voxel
values (as float64) and the grid, after bringing the array to a canonical orientation, so
the same scan has the same hash whether it was read from a DICOM series or a NIfTI/NRRD
file, whatever its dtype and axis order on disk. A second scan with the same hash is a
duplicate (refused unless ``replace=True``).

Crash safety: ``dataset.json`` is the record; a case exists when it lists it. Adding a case
first writes a small journal (``.segloop-pending.json``) naming the files about to be written,
then the files, then ``dataset.json``, then removes the journal; removing a case journals
its files, writes ``dataset.json``, then deletes them. A kill at any moment leaves at worst a
journal whose files ``dataset.json`` may or may not list: the next open (or write) of the
dataset deletes the journalled files that ``dataset.json`` does not list and the journal
itself, so an interrupted add is rolled back (the same case can be added again, under the same
id) and an interrupted removal is finished. Only files SegLoop itself journalled are ever
deleted, never other files a user put in the folders.

Validation split: assigned once, when a case is added, and never changed. A case goes
to "val" when its hash says so (``int(hash) % 1000 < 1000 * val_fraction``) unless that
would put more than ``ceil(val_fraction * n)`` cases in val, and it is forced to "val"
when val has fewer than ``floor(val_fraction * n)`` cases (at least one from the third
case on). Removing or adding cases never moves another case between splits; replacing a
case (same hash) keeps its split.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_engine.io.atomic import atomic_write_json
from unet_engine.data.case_identity import assign_split, content_hash, hash_says_val  # noqa: F401 (re-exported)
from unet_engine.data.journal import CASE_DIRS, EXT, PendingJournal
from unet_engine.data.lock import FolderLock
from unet_engine.errors import DatasetError, GeometryMismatchError
from unet_engine.volume import Volume, geometry_differences
from unet_engine.timestamps import now_iso

log = logging.getLogger(__name__)

FORMAT = "segloop-retraining-dataset"
FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.2


# ----- case records ----------------------------------------------------------------------------


@dataclass
class CaseInfo:
    """One case of the dataset, as stored in ``dataset.json``."""

    id: str
    image: str  # relative paths, MSD style ("./imagesTr/<id>.nii.gz")
    label: str
    hash: str
    split: str  # "train" or "val"
    edits: str | None = None
    model_version: str | None = None
    reviewer: str | None = None
    source_path: str | None = None
    added: str = ""
    updated: str | None = None
    shape: list[int] = field(default_factory=list)
    spacing: list[float] = field(default_factory=list)
    label_voxels: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CaseInfo":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def case_id_from_name(text: str) -> str:
    """A case id from a file name: the stem without image suffixes, safe as a file name."""
    stem = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.nhdr|\.mha|\.mhd|\.dcm|\.gz)$", "", text, flags=re.I)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")
    return stem[:64] or "case"


def _label_array(image: Volume, label: Volume | np.ndarray, what: str = "label") -> np.ndarray:
    """Check ``label`` lies on ``image``'s grid; return it as an integer array."""
    if isinstance(label, Volume):
        diffs = geometry_differences(image, label)
        if diffs:
            raise GeometryMismatchError(f"the {what} does not lie on the scan's grid: {'; '.join(diffs)}", image.source_path)
        label = label.array
    arr = np.asarray(label)
    if arr.ndim == 2 and image.shape[0] == 1:
        arr = arr[None]
    if tuple(arr.shape) != image.shape:
        raise GeometryMismatchError(f"the {what} has shape {tuple(arr.shape)} but the scan has {image.shape}", image.source_path)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.rint(arr)):
            raise DatasetError(f"the {what} has non-integer values; a label map holds label numbers 0, 1, 2, ...")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DatasetError(f"the {what} has dtype {arr.dtype}; expected integers")
    if arr.size and arr.min() < 0:
        raise DatasetError(f"the {what} has negative values")
    return arr.astype(np.uint8 if (arr.size == 0 or arr.max() < 256) else np.uint16, copy=False)


# ----- the dataset -----------------------------------------------------------------------------


class RetrainingDataset:
    """A retraining dataset folder (see the module docstring for the layout and rules)."""

    def __init__(self, folder: str | Path, *, lock_timeout: float = 10.0) -> None:
        self.folder = Path(folder)
        self.json_path = self.folder / "dataset.json"
        if not self.json_path.is_file():
            raise DatasetError("not a SegLoop retraining dataset (no dataset.json); create one with "
                               "`segloop dataset create`", self.folder)
        self._lock = FolderLock(self.folder, timeout=lock_timeout, what="the dataset", error_cls=DatasetError)
        self._journal = PendingJournal(self.folder)
        self._read()  # validate now
        self._remove_stale_temp_files()

    # ----- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, labels: dict[int, str], *, name: str | None = None, modality: str = "MRI",
               description: str = "", val_fraction: float = DEFAULT_VAL_FRACTION, exist_ok: bool = False,
               lock_timeout: float = 10.0) -> "RetrainingDataset":
        """Create an empty dataset; ``labels`` maps label numbers (1, 2, ...) to names."""
        folder = Path(folder)
        if (folder / "dataset.json").exists():
            if exist_ok:
                return cls(folder, lock_timeout=lock_timeout)
            raise DatasetError("a dataset already exists here", folder)
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
        lab = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
        if not lab:
            raise DatasetError("a dataset needs at least one foreground label (e.g. {1: 'tumour'})", folder)
        lock = FolderLock(folder, timeout=lock_timeout, what="the dataset", error_cls=DatasetError)
        with lock.hold():
            if (folder / "dataset.json").exists():
                raise DatasetError("a dataset already exists here", folder)
            for sub in ("imagesTr", "labelsTr", "editsTr"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            meta = {
                "name": name or folder.name,
                "description": description or "SegLoop retraining dataset (corrected segmentations)",
                "tensorImageSize": "3D",
                "modality": {"0": modality},
                "labels": {"0": "background", **{str(k): v for k, v in sorted(lab.items())}},
                "numTraining": 0,
                "numTest": 0,
                "training": [],
                "test": [],
                "segloop": {"format": FORMAT, "version": FORMAT_VERSION, "val_fraction": float(val_fraction),
                            "created": now_iso(), "split_rule": "hash-with-quota (see unet_engine.data.dataset)"},
            }
            atomic_write_json(folder / "dataset.json", meta)
        return cls(folder, lock_timeout=lock_timeout)

    # ----- reading ---------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError("dataset.json is missing", self.folder) from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"dataset.json is unreadable ({exc})", self.json_path) from None
        if not isinstance(meta, dict) or "training" not in meta or "labels" not in meta:
            raise DatasetError("dataset.json lacks 'labels' or 'training'", self.json_path)
        meta.setdefault("segloop", {"format": FORMAT, "version": FORMAT_VERSION, "val_fraction": DEFAULT_VAL_FRACTION})
        return meta

    @property
    def meta(self) -> dict[str, Any]:
        """A fresh copy of ``dataset.json`` (other instances may have written since)."""
        return self._read()

    @property
    def name(self) -> str:
        return str(self._read().get("name", self.folder.name))

    @property
    def labels(self) -> dict[int, str]:
        """Foreground labels: number -> name (background 0 excluded)."""
        return {int(k): v for k, v in self._read()["labels"].items() if int(k) != 0}

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    @property
    def modality(self) -> str:
        return str(self._read().get("modality", {}).get("0", "unknown"))

    @property
    def val_fraction(self) -> float:
        return float(self._read()["segloop"].get("val_fraction", DEFAULT_VAL_FRACTION))

    def cases(self) -> list[CaseInfo]:
        return [CaseInfo.from_dict(c) for c in self._read()["training"]]

    def train_cases(self) -> list[CaseInfo]:
        return [c for c in self.cases() if c.split == "train"]

    def val_cases(self) -> list[CaseInfo]:
        return [c for c in self.cases() if c.split == "val"]

    def __len__(self) -> int:
        return len(self._read()["training"])

    def get(self, case_id: str) -> CaseInfo:
        for c in self.cases():
            if c.id == case_id:
                return c
        raise DatasetError(f"no case {case_id!r} in this dataset", self.folder)

    def find_hash(self, digest: str) -> CaseInfo | None:
        return next((c for c in self.cases() if c.hash == digest), None)

    def path_of(self, relative: str) -> Path:
        return self.folder / relative.removeprefix("./")

    def image_path(self, case: CaseInfo | str) -> Path:
        return self.path_of((self.get(case) if isinstance(case, str) else case).image)

    def label_path(self, case: CaseInfo | str) -> Path:
        return self.path_of((self.get(case) if isinstance(case, str) else case).label)

    def edits_path(self, case: CaseInfo | str) -> Path | None:
        c = self.get(case) if isinstance(case, str) else case
        return self.path_of(c.edits) if c.edits else None

    def load_case(self, case: CaseInfo | str) -> tuple[Volume, np.ndarray, np.ndarray | None]:
        """``(image Volume, label array, edited-voxel mask or None)`` of one case."""
        from unet_engine.io.volume_io import read_mask, read_volume

        c = self.get(case) if isinstance(case, str) else case
        image = read_volume(self.image_path(c))
        label = np.asarray(read_mask(self.label_path(c), image))
        ep = self.edits_path(c)
        edits = np.asarray(read_mask(ep, image)).astype(bool) if ep is not None and ep.exists() else None
        return image, label, edits

    def snapshot(self) -> list[dict[str, str]]:
        """Case ids, hashes and splits: what a model version was trained on."""
        return [{"id": c.id, "hash": c.hash, "split": c.split} for c in self.cases()]

    # ----- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the dataset's write lock (re-entrant in this thread)."""
        with self._lock.hold(timeout):
            yield

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files a killed writer left behind and finish or roll back its interrupted
        add / remove (only when no other instance writes)."""
        try:
            with self._lock.hold(timeout=0):
                self._settle_pending()
                for sub in (*CASE_DIRS, "."):
                    for p in (self.folder / sub).glob(".*.tmp*"):
                        if p.is_file():
                            p.unlink(missing_ok=True)
                        elif p.is_dir():
                            shutil.rmtree(p, ignore_errors=True)
        except DatasetError:
            pass  # another instance holds the lock and may be mid-write: its temp files are live
        except OSError as exc:
            log.warning("could not remove stale temp files in %s: %s", self.folder, exc)

    def _settle_pending(self, meta: dict[str, Any] | None = None) -> list[Path]:
        """Finish or roll back an add / remove a killed writer left half done (lock held)."""
        if not self._journal.exists():
            return []
        meta = self._read() if meta is None else meta
        return self._journal.settle({self.path_of(c[k]).resolve() for c in meta["training"]
                                     for k in ("image", "label", "edits") if c.get(k)})

    def _write(self, meta: dict[str, Any]) -> None:
        meta["numTraining"] = len(meta["training"])
        atomic_write_json(self.json_path, meta)

    def _check_labels(self, arr: np.ndarray, what: str = "label") -> dict[str, int]:
        values, counts = np.unique(arr, return_counts=True)
        known = set(self.labels) | {0}
        unknown = sorted(int(v) for v in values if int(v) not in known)
        if unknown:
            raise DatasetError(f"the {what} has values {unknown} that are not labels of this dataset "
                               f"({', '.join(f'{k}={v}' for k, v in self.labels.items())})", self.folder)
        return {str(int(v)): int(n) for v, n in zip(values, counts) if int(v) != 0}

    def _unique_id(self, meta: dict[str, Any], wanted: str) -> str:
        taken = {c["id"] for c in meta["training"]}
        base = case_id_from_name(wanted)
        if base not in taken and not (self.folder / "imagesTr" / f"{base}{EXT}").exists():
            return base
        n = 2
        while f"{base}_{n}" in taken or (self.folder / "imagesTr" / f"{base}_{n}{EXT}").exists():
            n += 1
        return f"{base}_{n}"

    def _write_files(self, case_id: str, image: Volume, label: np.ndarray, edits: np.ndarray | None) -> None:
        from unet_engine.io.volume_io import write_mask, write_volume

        # geometry + voxels only: no source path, no DICOM header travels into the dataset
        clean = Volume(array=image.array, spacing=image.spacing, origin=image.origin,
                       direction=np.asarray(image.direction).copy(), modality=image.modality)
        # io's writers are atomic themselves (temp file + fsync + rename)
        write_volume(clean, self.folder / "imagesTr" / f"{case_id}{EXT}")
        write_mask(label, clean, self.folder / "labelsTr" / f"{case_id}{EXT}")
        if edits is not None:
            write_mask(edits.astype(np.uint8), clean, self.folder / "editsTr" / f"{case_id}{EXT}")

    def add_case(self, image: Volume, label: Volume | np.ndarray, *, edited: np.ndarray | None = None,
                 model_version: str | None = None, reviewer: str | None = None,
                 source_path: str | Path | None = None, replace: bool = False, case_id: str | None = None) -> str:
        """Add a corrected case; returns its id.

        Raises :class:`GeometryMismatchError` when the label (or ``edited``) is not on the
        scan's grid and :class:`DatasetError` when the scan is already in the dataset (same
        :func:`content_hash`) unless ``replace`` is true, in which case the existing case
        keeps its id and split and gets the new label, edits and provenance.
        """
        if image.channels != 1:
            raise DatasetError(f"only single-channel scans can be added (this one has {image.channels} channels)",
                               image.source_path)
        label_arr = _label_array(image, label)
        edits_arr = None if edited is None else _label_array(image, edited, "edited-voxel mask").astype(bool)
        voxels = self._check_labels(label_arr)
        digest = content_hash(image)
        src = source_path if source_path is not None else image.source_path
        with self.locked():
            meta = self._read()
            self._settle_pending(meta)
            existing = next((c for c in meta["training"] if c["hash"] == digest), None)
            if existing is not None and not replace:
                raise DatasetError(f"this scan is already in the dataset as case {existing['id']!r} "
                                   f"(added {existing.get('added', '?')}); use replace to update its label", self.folder)
            if existing is not None:
                cid, split, added = existing["id"], existing["split"], existing.get("added", now_iso())
            else:
                cid = self._unique_id(meta, case_id or (Path(str(src)).name if src else f"case_{len(meta['training']) + 1:04d}"))
                n_val = sum(1 for c in meta["training"] if c["split"] == "val")
                split = assign_split(digest, len(meta["training"]) + 1, n_val,
                                     float(meta["segloop"].get("val_fraction", DEFAULT_VAL_FRACTION)))
                added = now_iso()
            new_files = [f"./{d}/{cid}{EXT}" for d in CASE_DIRS if d != "editsTr" or edits_arr is not None]
            if existing is None:  # a new case: journal its files, so a kill before dataset.json is undone
                self._journal.begin("add", cid, new_files)
            try:
                self._write_files(cid, image, label_arr, edits_arr)  # files first, dataset.json last
            except BaseException:
                if existing is None:
                    try:
                        self._settle_pending(meta)  # nothing half-added stays behind
                    except OSError as exc:
                        log.warning("could not undo the failed add of %s: %s", cid, exc)
                raise
            info = CaseInfo(
                id=cid, image=f"./imagesTr/{cid}{EXT}", label=f"./labelsTr/{cid}{EXT}", hash=digest, split=split,
                edits=f"./editsTr/{cid}{EXT}" if edits_arr is not None else None,
                model_version=model_version, reviewer=reviewer, source_path=str(src) if src is not None else None,
                added=added, updated=now_iso() if existing is not None else None, shape=list(image.shape),
                spacing=[float(s) for s in image.spacing], label_voxels=voxels,
            )
            if existing is not None:
                meta["training"] = [info.to_dict() if c["id"] == cid else c for c in meta["training"]]
            else:
                meta["training"].append(info.to_dict())
            self._write(meta)
            if existing is None:
                self._journal.end()
            if existing is not None and edits_arr is None:
                (self.folder / "editsTr" / f"{cid}{EXT}").unlink(missing_ok=True)
        log.info("added case %s (%s) to %s", cid, split, self.folder)
        return cid

    def update_case(self, case_id: str, *, label: Volume | np.ndarray | None = None, edited: np.ndarray | None = None,
                    model_version: str | None = None, reviewer: str | None = None) -> CaseInfo:
        """Change a case's label / edits / provenance; its image, hash and split stay."""
        with self.locked():
            meta = self._read()
            entry = next((c for c in meta["training"] if c["id"] == case_id), None)
            if entry is None:
                raise DatasetError(f"no case {case_id!r} in this dataset", self.folder)
            info = CaseInfo.from_dict(entry)
            if label is not None or edited is not None:
                from unet_engine.io.volume_io import read_volume, write_mask

                image = read_volume(self.path_of(info.image))
                if label is not None:
                    arr = _label_array(image, label)
                    info.label_voxels = self._check_labels(arr)
                    write_mask(arr, image, self.path_of(info.label))
                if edited is not None:
                    e = _label_array(image, edited, "edited-voxel mask").astype(np.uint8)
                    info.edits = f"./editsTr/{case_id}{EXT}"
                    write_mask(e, image, self.path_of(info.edits))
            if model_version is not None:
                info.model_version = model_version
            if reviewer is not None:
                info.reviewer = reviewer
            info.updated = now_iso()
            meta["training"] = [info.to_dict() if c["id"] == case_id else c for c in meta["training"]]
            self._write(meta)
        return info

    def remove_case(self, case_id: str) -> None:
        """Remove a case (dataset.json first, then its files); other cases keep their split."""
        with self.locked():
            meta = self._read()
            self._settle_pending(meta)
            entry = next((c for c in meta["training"] if c["id"] == case_id), None)
            if entry is None:
                raise DatasetError(f"no case {case_id!r} in this dataset", self.folder)
            files = [entry[k] for k in ("image", "label", "edits") if entry.get(k)]
            self._journal.begin("remove", case_id, files)  # a kill after dataset.json: the next open finishes it
            meta["training"] = [c for c in meta["training"] if c["id"] != case_id]
            self._write(meta)
            for rel in files:
                self.path_of(rel).unlink(missing_ok=True)
            self._journal.end()

    def add_labels(self, labels: dict[int, str]) -> dict[int, str]:
        """Add foreground labels (new values with new names); returns the labels now in the dataset.

        Existing labels are never renamed or renumbered: a value already present must keep its
        name, and a name already used by another value is refused.
        """
        with self.locked():
            meta = self._read()
            current = {int(k): str(v) for k, v in meta["labels"].items() if int(k) != 0}
            names = {v.casefold(): k for k, v in current.items()}
            changed = False
            for value, name in sorted((int(k), str(v)) for k, v in labels.items()):
                if value == 0:
                    continue
                if value in current:
                    if current[value] != name:
                        raise DatasetError(f"label {value} is {current[value]!r} in this dataset, not {name!r}; "
                                           "labels are never renamed", self.folder)
                    continue
                if name.casefold() in names:
                    raise DatasetError(f"label name {name!r} is already used by label {names[name.casefold()]}",
                                       self.folder)
                current[value] = name
                names[name.casefold()] = value
                changed = True
            if changed:
                meta["labels"] = {"0": "background", **{str(k): v for k, v in sorted(current.items())}}
                self._write(meta)
        return dict(sorted(current.items()))

    def orphan_files(self) -> list[Path]:
        """Image/label files no case refers to (left by a crash between file and json writes)."""
        used = set()
        for c in self.cases():
            used |= {self.path_of(p).resolve() for p in (c.image, c.label, c.edits) if p}
        out = []
        for sub in ("imagesTr", "labelsTr", "editsTr"):
            for p in sorted((self.folder / sub).glob("*")):
                if p.resolve() not in used:
                    out.append(p)
        return out
