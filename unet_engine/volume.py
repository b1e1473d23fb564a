"""The `Volume`: a voxel array plus the geometry that places it in the patient.

Conventions (used everywhere in SegLoop, engine and GUI alike):

* ``array`` is indexed ``[k, j, i]`` (slowest to fastest), the numpy order SimpleITK
  uses: ``array.shape == (nk, nj, ni)``. For a typical axial acquisition ``k`` is the
  slice axis. A multi-channel image (RGB) stores channels last: ``(nk, nj, ni, c)``.
* ``spacing`` is in the same array-axis order ``(sk, sj, si)``, in millimetres.
* World coordinates are LPS millimetres (DICOM / ITK convention). ``origin`` is the
  world position ``(x, y, z)`` of the centre of voxel ``[0, 0, 0]``.
* ``direction`` is a 3x3 matrix whose column ``a`` is the world unit vector of array
  axis ``a`` (again ``k, j, i`` order). It is ITK's direction matrix with its columns
  reversed, so ITK's identity (i->x, j->y, k->z) is ``identity_direction()``, the
  anti-diagonal matrix, and is the default.
* ``affine`` maps ``(k, j, i, 1)`` to LPS ``(x, y, z, 1)``; ``affine_ras_ijk`` is the
  nibabel-style affine mapping ``(i, j, k, 1)`` to RAS, for interoperability.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import SupportsFloat, SupportsInt, cast

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

Float3 = tuple[float, float, float]
Int3 = tuple[int, int, int]
Region = tuple[slice, slice, slice]  # a (k, j, i) box of voxels


def float3(values: Iterable[SupportsFloat]) -> Float3:
    """``tuple(float(v) for v in values)`` typed as the (k, j, i) or (x, y, z) triple the
    caller's values are (a spacing, an origin, a point); the length is not checked."""
    return cast(Float3, tuple(float(v) for v in values))


def int3(values: Iterable[SupportsInt]) -> Int3:
    """``tuple(int(v) for v in values)`` typed as the triple the caller's values are (a
    shape, a voxel index); the length is not checked."""
    return cast(Int3, tuple(int(v) for v in values))


def region3(slices: Iterable[slice]) -> Region:
    """``tuple(slices)`` typed as the (k, j, i) box the caller's slices are; the length is not checked."""
    return cast(Region, tuple(slices))


def whole_region(shape: Iterable[SupportsInt]) -> Region:
    """The box covering all of ``shape``."""
    return region3(slice(0, int(n)) for n in shape)


def identity_direction() -> np.ndarray:
    """Direction of an axis-aligned LPS grid in (k, j, i) column order: k->z, j->y, i->x."""
    return np.eye(3)[:, ::-1].copy()


def direction_from_itk(itk_direction: "tuple[float, ...] | np.ndarray") -> np.ndarray:
    """Convert ITK's row-major 3x3 direction (columns i, j, k) to SegLoop's (k, j, i)."""
    return np.asarray(itk_direction, dtype=np.float64).reshape(3, 3)[:, ::-1].copy()


def direction_to_itk(direction: np.ndarray) -> tuple[float, ...]:
    """Convert SegLoop's (k, j, i) direction to ITK's flat row-major tuple (columns i, j, k)."""
    return tuple(float(v) for v in np.asarray(direction)[:, ::-1].reshape(-1))


@dataclass(eq=False)
class Volume:
    """A 3D scan (or a one-slice 2D image) with its geometry."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: identity_direction())
    modality: str = "unknown"  # "CT", "MR", "photo", "label" or "unknown"
    source_path: Path | None = None

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise ValueError(f"Volume array must be 3D (k, j, i) or 4D with channels last, got {self.array.shape}")
        self.spacing = float3(self.spacing)
        self.origin = float3(self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if any(s <= 0 or not np.isfinite(s) for s in self.spacing):
            raise ValueError(f"Volume spacing must be positive and finite, got {self.spacing}")

    # ----- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(nk, nj, ni)`` (channels excluded)."""
        return int3(self.array.shape[:3])

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    # ----- geometry ----------------------------------------------------------------------
    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, j, i, 1)`` to LPS world ``(x, y, z, 1)`` in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag(self.spacing)
        a[:3, 3] = self.origin
        return a

    @property
    def affine_ras_ijk(self) -> np.ndarray:
        """nibabel-style affine: ``(i, j, k, 1)`` to RAS world, in mm."""
        perm = np.zeros((4, 4))
        perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (i,j,k) -> (k,j,i)
        return LPS_TO_RAS @ self.affine @ perm

    def voxel_to_world(self, kji: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """LPS world position (mm) of voxel index/indices ``(k, j, i)`` (shape ``(..., 3)``)."""
        idx = np.asarray(kji, dtype=np.float64)
        return idx @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def world_to_voxel(self, xyz: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """Continuous voxel index ``(k, j, i)`` of LPS world position(s) ``xyz`` (mm)."""
        m = self.direction @ np.diag(self.spacing)
        return (np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin)) @ np.linalg.inv(m).T

    def orientation_code(self) -> str:
        """Three-letter code (nibabel convention, axes ``i, j, k``) of the RAS direction
        each axis points to, e.g. ``"RAS"``, ``"LPS"``, ``"LAS"``."""
        ras_dirs = (LPS_TO_RAS[:3, :3] @ self.direction)[:, ::-1]  # columns i, j, k
        letters = (("L", "R"), ("P", "A"), ("I", "S"))
        code = ""
        for col in range(3):
            v = ras_dirs[:, col]
            axis = int(np.argmax(np.abs(v)))
            code += letters[axis][1 if v[axis] > 0 else 0]
        return code

    def same_geometry(self, other: "Volume", tol_mm: float = 1e-4) -> bool:
        """True when ``other`` lies on exactly the same voxel grid."""
        return not geometry_differences(self, other, tol_mm)

    def with_array(self, array: np.ndarray, modality: str | None = None) -> "Volume":
        """A new Volume on the same grid holding ``array`` (e.g. a mask for this scan)."""
        if tuple(array.shape[:3]) != self.shape:
            raise ValueError(f"array shape {array.shape[:3]} does not match volume shape {self.shape}")
        return replace(self, array=array, modality=modality or self.modality, direction=self.direction.copy())


def geometry_differences(a: Volume, b: Volume, tol_mm: float = 1e-4) -> list[str]:
    """Human-readable list of how two grids differ (empty when they match)."""
    out: list[str] = []
    if a.shape != b.shape:
        out.append(f"shape {b.shape} vs {a.shape}")
        return out
    if not np.allclose(a.spacing, b.spacing, atol=tol_mm, rtol=0):
        out.append(f"spacing {tuple(round(s, 5) for s in b.spacing)} vs {tuple(round(s, 5) for s in a.spacing)} mm")
    if not np.allclose(a.origin, b.origin, atol=max(tol_mm, 1e-3), rtol=0):
        out.append(f"origin {tuple(round(o, 4) for o in b.origin)} vs {tuple(round(o, 4) for o in a.origin)} mm")
    if not np.allclose(a.direction, b.direction, atol=1e-4, rtol=0):
        out.append(f"direction {b.orientation_code()} vs {a.orientation_code()}")
    return out
