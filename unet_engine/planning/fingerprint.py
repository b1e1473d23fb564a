"""The dataset fingerprint a first model is planned from (nnU-Net's "dataset fingerprint").

Per case: grid shape and spacing in the engine's ``(k, j, i)`` order (see
:mod:`unet_engine.volume`), voxels per label, the extent of the labelled region (its
bounding box, for the patch size on a CPU) and the array axis closest to the patient's
left-right axis (for the mirroring rule of :mod:`unet_engine.planning.rules`). For CT the
foreground intensities (voxels under any label) are sampled, as nnU-Net does, to give the
0.5 / 99.5 percentiles the CT window is clipped to.

Shapes, spacings and label counts come from the dataset's ``dataset.json`` (recorded when
each case was added); the label maps are read for the labelled extent, the images only for
what the record lacks: the orientation (header only for NIfTI) and, for CT, the intensities.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import numpy as np

from unet_engine.errors import SegLoopError
from unet_engine.modality import MODALITIES, normalize_modality  # noqa: F401 (re-exported)
from unet_engine.volume import float3, int3

log = logging.getLogger(__name__)

INTENSITY_SAMPLES_TOTAL = 1_000_000  # foreground voxels sampled over all cases (CT)
INTENSITY_SAMPLES_MAX_PER_CASE = 100_000


@dataclass
class CaseFingerprint:
    """One case: grid, spacing, label voxel counts, left-right axis (None: unknown / oblique)."""

    id: str
    shape: list[int]  # (k, j, i)
    spacing: list[float]  # (k, j, i) mm
    label_voxels: dict[int, int] = field(default_factory=dict)
    split: str = "train"
    lr_axis: int | None = None
    fg_extent: list[int] | None = None  # (k, j, i) voxels of the labelled region's bounding box; None: no label

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CaseFingerprint":
        return cls(id=str(d["id"]), shape=[int(v) for v in d["shape"]], spacing=[float(v) for v in d["spacing"]],
                   label_voxels={int(k): int(v) for k, v in (d.get("label_voxels") or {}).items()},
                   split=str(d.get("split", "train")), lr_axis=None if d.get("lr_axis") is None else int(d["lr_axis"]),
                   fg_extent=None if d.get("fg_extent") is None else [int(v) for v in d["fg_extent"]])


@dataclass
class DatasetFingerprint:
    """What the planner knows about a dataset (JSON-able with :meth:`to_dict` / :meth:`from_dict`)."""

    modality: str  # CT, MR, US or other
    labels: dict[int, str]
    cases: list[CaseFingerprint]
    intensity: dict[str, float] | None = None  # CT: foreground percentiles / mean / std / samples

    def __post_init__(self) -> None:
        self.modality = normalize_modality(self.modality)
        if not self.cases:
            raise SegLoopError("the dataset has no cases: draw and add at least one case before planning a model")
        for c in self.cases:
            if len(c.shape) != 3 or len(c.spacing) != 3 or min(c.shape) < 1 or not min(c.spacing) > 0:
                raise SegLoopError(f"case {c.id!r}: shape {c.shape} / spacing {c.spacing} are not a 3D grid")

    # ----- summaries ---------------------------------------------------------------------------
    @property
    def spacings(self) -> np.ndarray:
        return np.array([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes(self) -> np.ndarray:
        return np.array([c.shape for c in self.cases], dtype=np.float64)

    @property
    def median_spacing(self) -> tuple[float, float, float]:
        return float3(np.median(self.spacings, axis=0))

    @property
    def median_shape(self) -> tuple[int, int, int]:
        return int3(round(v) for v in np.median(self.shapes, axis=0))

    def spacing_percentile(self, q: float) -> tuple[float, float, float]:
        return float3(np.percentile(self.spacings, q, axis=0))

    def median_shape_at(self, target: tuple[float | None, ...] | None) -> tuple[int, int, int]:
        """Median grid after resampling every case to ``target`` spacing (None entries: native)."""
        if target is None:
            return self.median_shape
        sizes = []
        for c in self.cases:
            sizes.append([n if t is None else n * s / t for n, s, t in zip(c.shape, c.spacing, target)])
        return int3(max(1, int(round(v))) for v in np.median(np.array(sizes), axis=0))

    def fg_extent_at(self, target: tuple[float | None, ...] | None, q: float = 90.0) -> tuple[int, int, int] | None:
        """The ``q``-th percentile over cases of the labelled region's extent, in voxels at ``target``."""
        ext = []
        for c in self.cases:
            if c.fg_extent is None:
                continue
            t = target or (None, None, None)
            ext.append([n if tt is None else n * s / tt for n, s, tt in zip(c.fg_extent, c.spacing, t)])
        if not ext:
            return None
        return int3(max(1, int(np.ceil(v))) for v in np.percentile(np.array(ext), q, axis=0))

    @property
    def label_totals(self) -> dict[int, int]:
        out = {k: 0 for k in self.labels}
        for c in self.cases:
            for k, n in c.label_voxels.items():
                out[k] = out.get(k, 0) + int(n)
        return out

    @property
    def lr_axis(self) -> int | None:
        """The array axis most cases have along the patient's left-right (None when unknown)."""
        axes = [c.lr_axis for c in self.cases if c.lr_axis is not None]
        if not axes:
            return None
        values, counts = np.unique(axes, return_counts=True)
        return int(values[int(np.argmax(counts))])

    @property
    def n_val(self) -> int:
        return sum(1 for c in self.cases if c.split == "val")

    @property
    def total_voxels(self) -> int:
        return int(sum(int(np.prod(c.shape)) for c in self.cases))

    # ----- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "labels": {str(k): v for k, v in self.labels.items()},
                "cases": [{**asdict(c), "label_voxels": {str(k): v for k, v in c.label_voxels.items()}}
                          for c in self.cases],
                "intensity": None if self.intensity is None else dict(self.intensity)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetFingerprint":
        try:
            return cls(modality=d["modality"], labels={int(k): str(v) for k, v in d["labels"].items()},
                       cases=[CaseFingerprint.from_dict(c) for c in d["cases"]],
                       intensity=None if d.get("intensity") is None else {k: float(v) for k, v in d["intensity"].items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise SegLoopError(f"dataset fingerprint: malformed ({exc})") from None


# ----- measuring a dataset ------------------------------------------------------------------------


def lr_axis_of(direction: np.ndarray) -> int | None:
    """Array axis (k=0, j=1, i=2) whose world direction is closest to the LPS x (left-right) axis.

    ``direction``'s columns are the world unit vectors of axes k, j, i (see
    :mod:`unet_engine.volume`). None when no axis is within 45 degrees of left-right.
    """
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3, 3):
        return None
    x = np.abs(d[0, :])  # LPS x component of each axis
    ax = int(np.argmax(x))
    return ax if x[ax] >= np.sqrt(0.5) else None


def _header_lr_axis(path: Any) -> int | None:
    """The left-right axis from a NIfTI header without reading the voxels (None if not NIfTI)."""
    name = str(path)
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        import nibabel as nib

        affine = cast(nib.Nifti1Image, nib.load(name)).affine  # RAS, columns for nibabel's axes (i, j, k)
    except Exception as exc:  # noqa: BLE001 - unreadable header: fall back to reading the volume
        log.debug("no header orientation for %s: %s", name, exc)
        return None
    cols = np.asarray(affine)[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if not np.all(norms > 0):
        return None
    x = np.abs(cols[0, :] / norms)  # R-L component of axes i, j, k
    ax = int(np.argmax(x))
    return (2 - ax) if x[ax] >= np.sqrt(0.5) else None  # nibabel (i, j, k) -> engine (k, j, i)


def _label_extent(label: np.ndarray) -> list[int] | None:
    """Bounding-box extent (voxels per axis) of label > 0; None when nothing is labelled."""
    fg = np.asarray(label) > 0
    if not fg.any():
        return None
    out = []
    for ax in range(fg.ndim):
        hit = np.flatnonzero(fg.any(axis=tuple(a for a in range(fg.ndim) if a != ax)))
        out.append(int(hit[-1] - hit[0] + 1))
    return out


def _header_label_extent(path: Any) -> list[int] | None | Literal[False]:
    """The labelled extent read with nibabel (engine order); False when the file is not NIfTI."""
    name = str(path)
    if not name.endswith((".nii", ".nii.gz")):
        return False
    try:
        import nibabel as nib

        arr = np.asarray(cast(nib.Nifti1Image, nib.load(name)).dataobj)
    except Exception as exc:  # noqa: BLE001 - unreadable: fall back to the engine's reader
        log.debug("cannot read %s with nibabel: %s", name, exc)
        return False
    if arr.ndim != 3:
        return False
    ext = _label_extent(arr)
    return None if ext is None else ext[::-1]  # nibabel (i, j, k) -> engine (k, j, i)


def fingerprint_dataset(dataset: Any, modality: str | None = None, *, case_ids: list[str] | None = None,
                        seed: int = 0) -> DatasetFingerprint:
    """Fingerprint a :class:`~unet_engine.data.dataset.RetrainingDataset` (all cases, or ``case_ids``).

    ``modality`` is the project's ("CT", "MR", "US", "other"; "MRI" = MR); None takes the
    dataset's own (its dataset.json). CT intensities are sampled from the foreground of every
    case (seeded: the same dataset gives the same fingerprint).
    """
    mod = normalize_modality(modality) if modality is not None else normalize_modality(dataset.modality, strict=False)
    labels = dict(dataset.labels)
    infos = dataset.cases()
    if case_ids is not None:
        wanted = set(case_ids)
        infos = [c for c in infos if c.id in wanted]
        missing = wanted - {c.id for c in infos}
        if missing:
            raise SegLoopError(f"fingerprint: no case(s) {', '.join(sorted(missing))} in the dataset", dataset.folder)
    if not infos:
        raise SegLoopError("the dataset has no cases: draw and add at least one case before planning a model",
                           dataset.folder)
    rng = np.random.default_rng(seed)
    per_case = max(1, min(INTENSITY_SAMPLES_MAX_PER_CASE, INTENSITY_SAMPLES_TOTAL // len(infos)))
    samples: list[np.ndarray] = []
    cases = []
    for info in infos:
        shape, spacing = list(info.shape), list(info.spacing)
        voxels = {int(k): int(v) for k, v in (info.label_voxels or {}).items()}
        lr = _header_lr_axis(dataset.image_path(info))
        extent = _header_label_extent(dataset.label_path(info))
        need_read = mod == "CT" or len(shape) != 3 or len(spacing) != 3 or lr is None or extent is False
        if need_read:
            image, label, _ = dataset.load_case(info)
            extent = _label_extent(label)
            shape, spacing = list(image.shape), [float(s) for s in image.spacing]
            lr = lr_axis_of(image.direction) if lr is None else lr
            if not voxels:
                values, counts = np.unique(label, return_counts=True)
                voxels = {int(v): int(n) for v, n in zip(values, counts) if int(v) != 0}
            if mod == "CT":
                fg = np.asarray(image.array)[np.asarray(label) > 0]
                fg = fg[np.isfinite(fg)] if fg.dtype.kind == "f" else fg
                if fg.size > per_case:
                    fg = fg[rng.choice(fg.size, size=per_case, replace=False)]
                if fg.size:
                    samples.append(fg.reshape(-1).astype(np.float64))
        cases.append(CaseFingerprint(info.id, [int(v) for v in shape], [float(s) for s in spacing], voxels,
                                     info.split, lr, None if extent is False else extent))
    intensity = None
    if mod == "CT":
        if samples:
            v = np.concatenate(samples)
            p = np.percentile(v, [0.5, 50.0, 99.5])
            intensity = {"p00_5": float(p[0]), "median": float(p[1]), "p99_5": float(p[2]), "mean": float(v.mean()),
                         "std": float(v.std()), "min": float(v.min()), "max": float(v.max()), "samples": float(v.size)}
        else:
            log.warning("CT fingerprint: no labelled voxels to sample intensities from")
    return DatasetFingerprint(mod, labels, cases, intensity)
