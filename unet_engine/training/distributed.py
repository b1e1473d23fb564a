"""Multi-GPU / multi-process training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N -m unet_engine.cli.main train ...`` (or ``segloop train`` run
by torchrun) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` reads them and starts the process group: NCCL
when the training device is CUDA (each process on ``cuda:LOCAL_RANK``), gloo on CPU.
Without those variables everything here is a no-op for a single process, so the same
training code runs with and without torchrun. No job scheduler is involved.
"""

from __future__ import annotations

import gc
import datetime as _dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_os() -> DistEnv:
    """The torchrun environment (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return DistEnv()
    if world <= 1:
        return DistEnv()
    return DistEnv(rank, world, local)


def launched_by_torchrun() -> bool:
    return env_from_os().distributed


def current() -> DistEnv:
    """The running process group's view (single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistEnv()


def init_from_env(device_type: str = "cpu", timeout_s: float = 1800.0) -> DistEnv:
    """Start the process group when launched by torchrun; returns this process's place.

    ``device_type`` "cuda" selects NCCL and pins the process to ``cuda:LOCAL_RANK``;
    anything else uses gloo. Idempotent.
    """
    env = env_from_os()
    if not env.distributed:
        return env
    if dist.is_initialized():
        return current()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    log.info("process group up: rank %d of %d (%s)", env.rank, env.world_size, backend)
    return env


def device_for(env: DistEnv, device: torch.device) -> torch.device:
    """Each rank's own GPU under NCCL; the CPU stays the CPU."""
    if env.distributed and device.type == "cuda":
        return torch.device("cuda", env.local_rank)
    return device


def shutdown() -> None:
    """Tear the process group down cleanly on every rank.

    DDP reducers still alive at interpreter exit, or a rank destroying the group while its
    peer is still using it, abort gloo's C++ threads ("terminate called without an active
    exception"): collect garbage first so no DDP wrapper outlives the group, then wait for
    every rank before destroying it.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        try:
            dist.barrier()
        except RuntimeError as exc:  # a peer already gone: still destroy our side
            log.warning("barrier before shutdown failed: %s", exc)
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place, returned); identity for a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers before each forward, so after the last training step every
    rank holds statistics updated with its own batch; call this before validating or
    saving so all ranks hold the same model.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for b in module.buffers():
        dist.broadcast(b.data, src=src)


def stop_flags(*flags: bool, device: torch.device | None = None) -> list[bool]:
    """Agree on stop conditions: each flag is true on every rank if it is true on any."""
    if not (dist.is_available() and dist.is_initialized()):
        return [bool(f) for f in flags]
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device or torch.device("cpu"))
    all_reduce_max(t)
    return [bool(v > 0.5) for v in t.tolist()]
