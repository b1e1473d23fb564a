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


def short_path(path: str | Path, limit: int = 120) -> str:
    """``path`` as text, with the middle cut out when it is longer than ``limit`` characters."""
    text = str(path)
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"


def os_reason(exc: BaseException) -> str:
    """The OS's reason for an :class:`OSError` ("File name too long"), without the path."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileAccessError(SegLoopError, OSError):
    """The operating system refused to open or read a file (name too long, no permission...)."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(f"{short_path(path)}: {message}" if path is not None else message)
        self.path = Path(path) if path is not None else None

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | Path, action: str = "read") -> FileAccessError:
        return cls(f"cannot {action} this file: {os_reason(exc)}", path)


class WriteFailedError(SegLoopError, OSError):
    """A save did not complete (full disk, read-only folder...); the previous file is kept.

    Also an :class:`OSError`, so code that already handled failed writes keeps working."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(f"{short_path(path)}: {message}" if path is not None else message)
        self.path = Path(path) if path is not None else None
