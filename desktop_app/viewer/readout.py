"""Status-bar text for the voxel under the mouse (no Qt)."""

from __future__ import annotations

import numpy as np

from unet_engine.volume import int3


def voxel_index(kji: tuple[float, float, float], shape: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """Nearest voxel ``(k, j, i)`` of a continuous index, or None outside the volume."""
    idx = int3(np.floor(v + 0.5) for v in kji)
    if any(not 0 <= v < n for v, n in zip(idx, shape)):
        return None
    return idx


def format_value(value) -> str:
    arr = np.asarray(value)
    if arr.ndim:  # RGB
        return "(" + ", ".join(format_value(v) for v in arr.tolist()) + ")"
    if arr.dtype.kind == "f":
        return f"{float(arr):.4g}"
    return str(int(arr))


def format_readout(volume, mask, labels, kji: tuple[int, int, int]) -> str:
    """``"i, j, k = ... | LPS x, y, z = ... mm | value ... | label ..."`` for voxel ``kji``.

    Voxel indices are shown in ``(i, j, k)`` order (ITK / nibabel / ITK-SNAP), world
    coordinates in LPS millimetres (DICOM convention, SegLoop's world frame).
    """
    k, j, i = (int(v) for v in kji)
    x, y, z = volume.voxel_to_world((k, j, i))
    value = format_value(volume.array[k, j, i])
    text = f"Voxel (i, j, k) = ({i}, {j}, {k})   LPS = ({x:.1f}, {y:.1f}, {z:.1f}) mm   Value {value}"
    if mask is not None:
        lab = int(mask[k, j, i])
        if lab == 0:
            name = "background"
        elif labels is not None and lab in labels:
            name = labels[lab].name
        else:
            name = f"Label {lab}"
        text += f"   Label {lab}: {name}"
    return text
