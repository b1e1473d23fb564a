"""What a U-Net step costs: arithmetic, memory, and the device budget it must fit.

Estimates only; :func:`unet_engine.planning.calibrate.calibrate_plan` replaces the time
estimate with measured steps. The constants were measured on this project's reference
CPU (torch 2.13, one thread: 60-100 GFLOP/s for the 2D and 3D U-Nets SegLoop builds,
``bench/acdc_first_model.py --calibration``), so a first plan is within a small factor.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import torch

from unet_engine.devices import available_memory_bytes, choose_device

log = logging.getLogger(__name__)

CPU_FLOPS_PER_THREAD = 70e9  # training FLOP/s of one CPU thread (measured 59-98 GFLOP/s, see the docstring)
CPU_THREAD_EFFICIENCY = 0.8  # exponent: n threads give n**0.8 the speed
GPU_FLOPS = {"cuda": 8e12, "mps": 2e12}  # effective, for small U-Nets (cuDNN on 16-512 channels)
GPU_MEMORY_SHARE = 0.5  # of the free device memory
CPU_MEMORY_SHARE = 0.25  # of the available RAM (the desktop app and the viewer live there too)
CPU_MEMORY_CAP = 8 << 30
CPU_STEP_TARGET_S = 0.5  # the batch grows while a CPU step stays under this (more updates in a fixed time)
CPU_STEP_MAX_S = 2.0  # the patch shrinks until a step of the minimum batch stays under this
GPU_STEP_TARGET_S = 1.5
GPU_STEP_MAX_S = 3.0
FIXED_OVERHEAD_BYTES = 300 << 20  # torch, allocator slack, one decoded case


@dataclass(frozen=True)
class DeviceBudget:
    """What a plan may use on one device."""

    kind: str  # "cpu", "cuda", "mps"
    name: str  # e.g. "cuda:0" or "cpu (2 threads)"
    threads: int
    memory_bytes: int  # for one training step (activations, weights, optimiser)
    flops_per_s: float
    step_target_s: float
    step_max_s: float

    @property
    def is_gpu(self) -> bool:
        return self.kind != "cpu"


def device_budget(device: str | torch.device = "auto", threads: int | None = None) -> DeviceBudget:
    """The budget of ``device`` ("auto", "cpu", "cuda", "cuda:1", "mps")."""
    dev = choose_device(device)
    if dev.type == "cpu":
        if threads is None:
            threads = torch.get_num_threads()
        threads = max(1, int(threads))
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS / Windows
            cores = os.cpu_count() or 1
        threads = min(threads, max(1, cores))
        mem = int(min(CPU_MEMORY_CAP, CPU_MEMORY_SHARE * available_memory_bytes(dev)))
        flops = CPU_FLOPS_PER_THREAD * threads**CPU_THREAD_EFFICIENCY
        return DeviceBudget("cpu", f"cpu ({threads} thread{'s' if threads > 1 else ''})", threads, mem, flops,
                            CPU_STEP_TARGET_S, CPU_STEP_MAX_S)
    mem = int(GPU_MEMORY_SHARE * available_memory_bytes(dev))
    return DeviceBudget(dev.type, str(dev), 0, mem, GPU_FLOPS.get(dev.type, 2e12), GPU_STEP_TARGET_S, GPU_STEP_MAX_S)


def with_flops(budget: DeviceBudget, flops_per_s: float) -> DeviceBudget:
    """The same budget with a measured device speed."""
    return DeviceBudget(budget.kind, budget.name, budget.threads, budget.memory_bytes, float(flops_per_s),
                        budget.step_target_s, budget.step_max_s)


def widths(base_width: int, depth: int) -> list[int]:
    return [int(base_width) * 2**level for level in range(int(depth) + 1)]


def forward_macs(dims: int, in_channels: int, num_classes: int, base_width: int, depth: int,
                 patch: tuple[int, ...] | list[int]) -> float:
    """Multiply-accumulates of one forward pass of :class:`unet_engine.model.network.UNet` on one sample."""
    w = widths(base_width, depth)
    n0 = float(math.prod(int(p) for p in patch))
    k = 3**dims
    macs = 0.0
    for level in range(depth + 1):
        n = n0 / 2 ** (dims * level)
        cin = in_channels if level == 0 else w[level - 1]
        macs += n * k * (cin * w[level] + w[level] * w[level])
    for level in range(depth):
        n = n0 / 2 ** (dims * level)
        macs += n * w[level + 1] * w[level]  # transposed conv, kernel 2 stride 2
        macs += n * k * (2 * w[level] * w[level] + w[level] * w[level])
    return macs + n0 * w[0] * num_classes


def activation_elements(dims: int, base_width: int, depth: int, patch: tuple[int, ...] | list[int]) -> float:
    """Feature-map elements one sample keeps for the backward pass (conv + BatchNorm outputs, skips)."""
    w = widths(base_width, depth)
    n0 = float(math.prod(int(p) for p in patch))
    total = 0.0
    for level in range(depth + 1):
        n = n0 / 2 ** (dims * level)
        total += 4 * w[level] * n + (w[level] * n / 2**dims if level < depth else 0)
    for level in range(depth):
        n = n0 / 2 ** (dims * level)
        total += w[level] * n + 2 * w[level] * n + 4 * w[level] * n  # up, concatenation, double conv
    return total


def parameter_count(dims: int, in_channels: int, num_classes: int, base_width: int, depth: int) -> int:
    w = widths(base_width, depth)
    k = 3**dims
    n = 0
    for level in range(depth + 1):
        cin = in_channels if level == 0 else w[level - 1]
        n += k * (cin * w[level] + w[level] * w[level]) + 4 * w[level]
    for level in range(depth):
        n += 2**dims * w[level + 1] * w[level] + w[level]
        n += k * (2 * w[level] * w[level] + w[level] * w[level]) + 4 * w[level]
    return int(n + w[0] * num_classes + num_classes)


def train_memory_bytes(dims: int, in_channels: int, num_classes: int, base_width: int, depth: int,
                       patch: tuple[int, ...] | list[int], batch: int) -> int:
    """Peak memory of one training step: activations and their gradients, weights + AdamW state."""
    act = activation_elements(dims, base_width, depth, patch) * batch * 4 * 2
    params = parameter_count(dims, in_channels, num_classes, base_width, depth) * 4 * 4
    return int(act + params + FIXED_OVERHEAD_BYTES)


def step_seconds(budget: DeviceBudget, dims: int, in_channels: int, num_classes: int, base_width: int, depth: int,
                 patch: tuple[int, ...] | list[int], batch: int) -> float:
    """Estimated seconds of one training step (forward + backward = 3 forwards, 2 FLOPs per MAC)."""
    flops = 6.0 * forward_macs(dims, in_channels, num_classes, base_width, depth, patch) * batch
    return flops / budget.flops_per_s


def inference_seconds(budget: DeviceBudget, dims: int, in_channels: int, num_classes: int, base_width: int,
                      depth: int, shape: tuple[int, ...]) -> float:
    """Estimated seconds to predict one volume of ``shape`` (the network's voxels, forward only)."""
    if dims == 2:
        plane, n = shape[1:], shape[0]
        flops = 2.0 * forward_macs(2, in_channels, num_classes, base_width, depth, plane) * n
    else:
        flops = 2.0 * forward_macs(3, in_channels, num_classes, base_width, depth, shape)
    return flops / budget.flops_per_s + 0.05
