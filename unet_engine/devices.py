"""Choosing the torch device, its inference precision, and sizing work to its memory.

Preference order for ``"auto"``: CUDA, then Apple MPS, then CPU. An explicitly requested
device that is not available is an error (the user asked for it), not a silent fallback.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

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


#: ``SEGLOOP_CPU_BF16=1`` / ``0`` forces bfloat16 inference on the CPU on / off instead of measuring.
CPU_BF16_ENV = "SEGLOOP_CPU_BF16"
#: bfloat16 is used on a CPU only when its convolutions run at least this much faster than float32.
CPU_BF16_MIN_SPEEDUP = 2.0


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """Whether CPU inference runs under bfloat16 autocast (as CUDA runs under float16).

    CPUs with bfloat16 matrix units (Intel AMX) run convolutions several times faster in
    bfloat16; elsewhere it is emulated and slower. Rather than read CPU flags, this times a
    small 3D convolution both ways once per process (~0.1 s) and says yes only at
    :data:`CPU_BF16_MIN_SPEEDUP` or more. :data:`CPU_BF16_ENV` decides instead when set.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        return forced in ("1", "true", "yes", "on")
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).eval()
    x = torch.randn(1, 32, 16, 48, 48).contiguous(memory_format=torch.channels_last_3d)
    conv = conv.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # documented; stubs omit it

    def best(bf16: bool) -> float:
        times = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(4):
                t0 = time.perf_counter()
                conv(x)
                times.append(time.perf_counter() - t0)
        return min(times[1:])

    try:
        fp32, bf16 = best(False), best(True)
    except RuntimeError as exc:  # no bfloat16 kernels in this build
        log.info("bfloat16 CPU inference unavailable (%s)", exc)
        return False
    fast = fp32 >= CPU_BF16_MIN_SPEEDUP * bf16
    log.info("CPU convolution float32 %.1f ms, bfloat16 %.1f ms: inference in %s", fp32 * 1e3, bf16 * 1e3,
             "bfloat16" if fast else "float32")
    return fast


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


@dataclass(frozen=True)
class MemoryUse:
    """The most memory tensors held on a GPU during some work, and the GPU's total."""

    peak: int  # bytes
    total: int  # bytes

    def __str__(self) -> str:
        return f"peak GPU memory {self.peak / (1 << 30):.2f} of {self.total / (1 << 30):.0f} GiB"


class PeakMemory:
    """Measures :class:`MemoryUse` on a CUDA device from construction to :meth:`stop`
    (``None`` on a CPU or MPS, where torch keeps no per-device peak)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def stop(self) -> MemoryUse | None:
        if not self.cuda:
            return None
        total = torch.cuda.get_device_properties(self.device).total_memory
        return MemoryUse(int(torch.cuda.max_memory_allocated(self.device)), int(total))


def run_description(device: str, precision: str, memory: MemoryUse | None = None) -> str:
    """How an inference ran, for people: ``cuda:0 (float16, peak GPU memory 2.10 of 140 GiB)``."""
    return f"{device} ({precision}{f', {memory}' if memory is not None else ''})"


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
