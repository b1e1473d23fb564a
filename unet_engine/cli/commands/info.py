"""``segloop info FILE_OR_FOLDER [--json] [--label]``: what a scan or label file holds.

Prints shape, spacing, orientation code, origin, data type, value range and modality;
for a label map (whole-number values 0..65535 with at most :data:`MAX_AUTO_LABELS`
distinct values, or ``--label``) also each label's voxel count and volume in mL.
Unreadable input prints the typed error on one line and exits with code 2 (see
:mod:`unet_engine.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unet_engine.io.volume_io import DEFAULT_MAX_VOXELS, read_volume
from unet_engine.io.checks import FORMATS, full_suffix, label_array, slabs
from unet_engine.io.seg_nrrd import label_counts
from unet_engine.volume import Volume

#: a file is listed as a label map without --label when it has at most this many values
MAX_AUTO_LABELS = 32

_FORMAT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM file"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info", help="show a scan's or label file's geometry and values",
        description="Show shape, spacing, orientation, origin, data type, value range and modality of a scan "
                    "(NIfTI, NRRD, MetaImage, DICOM folder or file, PNG/JPEG/TIFF/BMP); for a label map also "
                    "the labels with voxel counts and volumes.")
    p.add_argument("path", metavar="FILE_OR_FOLDER", help="image file or DICOM folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--label", action="store_true", help="treat the file as a label map (list every label)")
    p.add_argument("--volume", type=int, default=None, metavar="N", help="open volume N of a 4D image")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="open images with NaN/Inf voxels (replaced by the lowest finite value)")
    p.add_argument("--max-voxels", type=int, default=DEFAULT_MAX_VOXELS, metavar="N",
                   help=f"refuse images larger than this (default {DEFAULT_MAX_VOXELS:,})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = read_volume(args.path, max_voxels=args.max_voxels, allow_nonfinite=args.allow_nonfinite,
                         volume_index=args.volume)
    info = describe(volume, as_label=True if args.label else None)
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def _format_name(path: Path | None) -> str:
    if path is None:
        return "in memory"
    if path.is_dir():
        return "DICOM series"
    fmt = FORMATS.get(full_suffix(path), "dicom")
    return _FORMAT_NAMES.get(fmt, full_suffix(path).lstrip(".").upper())


def _value_range(array: np.ndarray) -> tuple[float, float]:
    if array.size == 0:
        return math.nan, math.nan
    return min(float(s.min()) for s in slabs(array)), max(float(s.max()) for s in slabs(array))


def _looks_like_labels(array: np.ndarray, lo: float, hi: float) -> bool:
    if array.ndim != 3 or lo < 0 or hi > 65535:
        return False
    if np.issubdtype(array.dtype, np.floating):
        if any(not np.array_equal(s, np.round(s)) for s in slabs(array)):
            return False
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        return False
    distinct = 0
    seen = np.zeros(int(hi) + 1, dtype=bool)
    for s in slabs(array):
        seen[np.unique(s).astype(np.int64)] = True
        distinct = int(seen.sum())
        if distinct > MAX_AUTO_LABELS:
            return False
    return True


def describe(volume: Volume, *, as_label: bool | None = None) -> dict[str, Any]:
    """Facts about ``volume`` as a JSON-ready dict (``as_label=None``: detect label maps)."""
    lo, hi = _value_range(volume.array)
    voxel_mm3 = float(np.prod(volume.spacing))
    info: dict[str, Any] = {
        "path": str(volume.source_path) if volume.source_path is not None else None,
        "format": _format_name(volume.source_path),
        "shape_kji": list(volume.shape),
        "size_ijk": list(volume.shape[::-1]),
        "channels": volume.channels,
        "spacing_kji_mm": [float(s) for s in volume.spacing],
        "spacing_ijk_mm": [float(s) for s in volume.spacing[::-1]],
        "orientation": volume.orientation_code(),
        "origin_lps_mm": [float(o) for o in volume.origin],
        "direction_kji": np.asarray(volume.direction).round(6).tolist(),
        "dtype": str(volume.array.dtype),
        "min": lo,
        "max": hi,
        "modality": volume.modality,
        "voxel_volume_mm3": voxel_mm3,
        "is_label": False,
    }
    if as_label is None:
        as_label = _looks_like_labels(volume.array, lo, hi)
    if as_label:
        labels = label_array(volume.array, volume.source_path, "label map")
        counts = label_counts(labels)
        info["is_label"] = True
        info["labels"] = [{"value": int(v), "voxels": int(counts[v]), "volume_ml": float(counts[v]) * voxel_mm3 / 1000}
                          for v in np.flatnonzero(counts)]
    return info


def _num(v: float) -> str:
    return f"{v:.6g}"


def format_text(info: dict[str, Any]) -> str:
    """The human-readable report printed by ``segloop info``."""
    ni, nj, nk = info["size_ijk"]
    si, sj, sk = info["spacing_ijk_mm"]
    code = info["orientation"]
    lines = [
        f"File         {info['path']}",
        f"Format       {info['format']}",
        f"Size         {ni} x {nj} x {nk} voxels (i x j x k); array [k, j, i] shape {tuple(info['shape_kji'])}"
        + (f", {info['channels']} channels" if info["channels"] > 1 else ""),
        f"Spacing      {_num(si)} x {_num(sj)} x {_num(sk)} mm (i x j x k)",
        f"Orientation  {code} (axes i, j, k point towards {', '.join(code)})",
        f"Origin       ({', '.join(f'{o:.4f}' for o in info['origin_lps_mm'])}) mm LPS, centre of voxel [0, 0, 0]",
        f"Data type    {info['dtype']}",
        f"Values       {_num(info['min'])} .. {_num(info['max'])}",
        f"Modality     {info['modality']}",
    ]
    if info["is_label"]:
        labels = info["labels"]
        lines.append(f"Labels       {len(labels)} values (voxel volume {_num(info['voxel_volume_mm3'])} mm^3)")
        lines.append(f"  {'label':>6}  {'voxels':>12}  {'volume (mL)':>12}")
        for lab in labels:
            lines.append(f"  {lab['value']:>6}  {lab['voxels']:>12,}  {lab['volume_ml']:>12.3f}")
    return "\n".join(lines)
