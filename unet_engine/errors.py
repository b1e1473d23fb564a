"""Typed errors with messages a radiologist can act on.

Every error names the file (or folder) and what is wrong with it; the GUI shows
``str(error)`` in a dialog and the CLI prints it, so never put a traceback in a message.
"""

from __future__ import annotations

from pathlib import Path


class SegLoopError(Exception):
    """Base class: something the user can fix (bad file, wrong geometry, ...)."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if path is not None else message)


class UnsupportedImageError(SegLoopError):
    """The file is not an image SegLoop can read (empty, truncated, unknown format...)."""


class ImageDimensionError(SegLoopError):
    """The image is 4D (or otherwise not a single 2D/3D volume)."""


class ImageTooLargeError(SegLoopError):
    """The header claims a size we refuse to allocate."""


class InvalidVoxelDataError(SegLoopError):
    """Voxel values are unusable (NaN/Inf where not allowed, non-integer labels...)."""


class DicomSeriesError(SegLoopError):
    """A DICOM folder has no series, a missing/duplicated slice, or mixed series."""


class GeometryMismatchError(SegLoopError):
    """A mask does not lie on the scan's voxel grid."""


class CheckpointError(SegLoopError):
    """A model file is not a valid SegLoop checkpoint."""


class DatasetError(SegLoopError):
    """The retraining dataset refuses an operation (duplicate, locked, corrupt...)."""


class RegistryError(SegLoopError):
    """The model registry refuses an operation (unknown version, ...)."""


class CancelledError(SegLoopError):
    """A long-running job was cancelled by the user."""


class SourceOverwriteError(SegLoopError):
    """A write would overwrite the source scan (or a file of its DICOM folder)."""


class ProjectError(SegLoopError):
    """A project refuses an operation (bad name, duplicate, corrupt project.json, ...)."""
