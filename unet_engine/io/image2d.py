"""2D pictures (PNG, JPEG, TIFF, BMP) as one-slice volumes, read with SimpleITK.

A grayscale picture opens as ``(1, H, W)``, a colour one as ``(1, H, W, 3)`` with
modality ``"photo"`` (alpha is dropped; a colour file whose three channels are equal,
as BMP/JPEG often store gray pictures, opens as grayscale). Pixel spacing comes from the
file (PNG pHYs, TIFF resolution) when present, else 1 mm; the slice spacing is 1 mm. A
multi-page TIFF opens as a stack of pages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_engine.io.itk_io import info_reader, read_itk_volume
from unet_engine.volume import Volume

_IMAGEIO = {".png": "PNGImageIO", ".jpg": "JPEGImageIO", ".jpeg": "JPEGImageIO", ".tif": "TIFFImageIO",
            ".tiff": "TIFFImageIO", ".bmp": "BMPImageIO"}


def read_image2d(path: Path, *, max_voxels: int, volume_index: int | None = None) -> Volume:
    """Read a PNG/JPEG/TIFF/BMP file as a :class:`Volume`."""
    reader = info_reader(path, _IMAGEIO.get(path.suffix.lower(), ""))
    array, spacing, origin, direction, _ = read_itk_volume(path, max_voxels=max_voxels, volume_index=volume_index,
                                                           photo=True, reader=reader)
    if array.ndim == 4 and array.shape[-1] == 2:  # gray + alpha
        array = np.ascontiguousarray(array[..., 0])
    if array.ndim == 4 and array.shape[-1] == 3 and _channels_equal(array):
        array = np.ascontiguousarray(array[..., 0])
    modality = "photo" if array.ndim == 4 else "unknown"
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction, modality=modality,
                  source_path=path)


def _channels_equal(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]))
