"""Shared helpers for the dataset / registry / training tests (real hippocampus cases)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"
HIPPO = DATA / "hippocampus"
LABELS = {1: "anterior", 2: "posterior"}
ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)  # 2 threads on 2 shared cores can be 10x slower (OpenMP spin-waits)


def make_dataset(tmp: Path, name: str = "ds", limit: int | None = None):
    from unet_engine.data.importing import import_msd

    return import_msd(HIPPO, tmp / name, labels=LABELS, limit=limit)


def tiny_config(**changes):
    """A very small 2D network and run: seconds on two CPU cores."""
    from unet_engine.training.config import TrainConfig

    base = dict(max_steps=8, steps_per_epoch=4, batch_size=4, warmup_steps=2, lr=3e-3, num_threads=1,
                model_spec={"base_width": 4, "depth": 2}, validate_at_start=False, val_max_cases=1,
                checkpoint_every_steps=4, cache_cases=2, samples_per_case=4)
    base.update(changes)
    return TrainConfig(**base)


def tiny_model(seed: int = 0):
    """A small scratch model + card for registry tests."""
    from unet_engine.model.checkpoint import ModelCard
    from unet_engine.model.network import ModelSpec, build_model

    torch.manual_seed(seed)
    spec = ModelSpec(dims=2, in_channels=1, num_classes=3, base_width=4, depth=2)
    return build_model(spec), ModelCard(spec=spec, labels={0: "background", **LABELS})


def shifted_copy(volume, delta: float = 1.0):
    """The same grid with different voxel values: a 'new scan' with a new hash."""
    from unet_engine.volume import Volume

    return Volume(volume.array.astype(np.float32) + np.float32(delta), volume.spacing, volume.origin,
                  volume.direction.copy(), volume.modality)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=python_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def inference_model(spec, seed: int = 0):
    """A freshly built network in eval mode with realistic BatchNorm statistics (one forward
    pass in train mode on noise), for inference tests."""
    import torch

    from unet_engine.model.network import build_model

    torch.manual_seed(seed)
    model = build_model(spec).train()
    with torch.no_grad():
        shape = (4, spec.in_channels, 16, 16) if spec.dims == 2 else (2, 1, 8, 8, 8)
        model(torch.randn(shape))
    return model.eval()


class OOMOffCPU(torch.nn.Module):
    """Out of memory whenever it runs anywhere but on the CPU (a GPU too small for the job)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if x.device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return self.inner(x)


#: A child-process hook (prepend to ``start_python`` code): ``kill_point(what)`` prints
#: ``KILLPOINT <what>`` and waits to be killed, so the parent kills it at exactly that point.
KILL_POINT_HOOK = (
    "import sys as _sys, time as _time\n"
    "def kill_point(what):\n"
    "    print('KILLPOINT', what, flush=True)\n"
    "    _time.sleep(600)\n"
    "    _sys.exit('not killed')\n"
)


def kill_at_marker(proc: subprocess.Popen, marker: str = "KILLPOINT", timeout: float = 90.0) -> list[str]:
    """Read ``proc``'s stdout until a line starts with ``marker``, SIGKILL it there; returns
    the lines read (the marker's last). Fails (after killing it) if it exits or times out first."""
    import queue
    import signal
    import threading

    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in iter(proc.stdout.readline, ""):
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {marker} line within {timeout:.0f} s; output: {seen}") from None
            if line is None:
                raise AssertionError(f"the child exited before {marker} (rc {proc.wait()}): {proc.stderr.read()}")
            seen.append(line)
            if line.startswith(marker):
                proc.send_signal(signal.SIGKILL)
                return seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
