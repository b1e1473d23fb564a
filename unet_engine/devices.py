"""Choosing the torch device and sizing work to its memory.

Preference order for ``"auto"``: CUDA, then Apple MPS, then CPU. An explicitly requested
device that is not available is an error (the user asked for it), not a silent fallback.
"""

from __future__ import annotations

import logging
import os

import torch

from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(pref: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``pref`` (``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)."""
    if isinstance(pref, torch.device):
        return pref
    pref = (pref or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except RuntimeError as exc:
        raise SegLoopError(f"unknown device {pref!r}; choose one of {', '.join(DEVICE_CHOICES)}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SegLoopError("device 'cuda' was requested but no CUDA GPU is available to this PyTorch build; "
                           "use --device cpu or auto")
    if dev.type == "mps" and not mps_available():
        raise SegLoopError("device 'mps' was requested but Apple MPS is not available here; use --device cpu or auto")
    return dev


def set_cpu_threads(n: int | None = None) -> int:
    """Use ``n`` (default: all usable cores) intra-op threads for CPU inference; returns it."""
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS / Windows
            n = os.cpu_count() or 1
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def available_memory_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device`` (a conservative estimate)."""
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        except Exception:  # noqa: BLE001 - driver quirks: the device is then not used  # pragma: no cover
            return 2 << 30
    if device.type == "mps":
        return 2 << 30  # unified memory; no reliable query, stay modest
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures raised by torch."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg
    return False


def empty_cache(device: torch.device) -> None:
    """Release cached allocator blocks after an OOM."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and mps_available():  # pragma: no cover - macOS only
        torch.mps.empty_cache()
