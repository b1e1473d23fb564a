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
    from unet_engine.dataset_import import import_msd

    return import_msd(HIPPO, tmp / name, labels=LABELS, limit=limit)


def tiny_config(**changes):
    """A very small 2D network and run: seconds on two CPU cores."""
    from unet_engine.train_config import TrainConfig

    base = dict(max_steps=8, steps_per_epoch=4, batch_size=4, warmup_steps=2, lr=3e-3, num_threads=1,
                model_spec={"base_width": 4, "depth": 2}, validate_at_start=False, val_max_cases=1,
                checkpoint_every_steps=4, cache_cases=2, samples_per_case=4)
    base.update(changes)
    return TrainConfig(**base)


def tiny_model(seed: int = 0):
    """A small scratch model + card for registry tests."""
    from unet_engine.checkpoint import ModelCard
    from unet_engine.model import ModelSpec, build_model

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

    from unet_engine.model import build_model

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
