"""The machinery under :func:`unet_engine.inference.predict_volume`.

* :func:`prepare_model`: an eval-mode, BatchNorm-folded, channels-last copy of the model on
  the device, cached while the weights do not change (the caller's model is never touched);
* :func:`estimate_batch_size`: slices/patches per forward pass for the device;
* :class:`Runner`: runs batches (fp16 autocast on CUDA), recovering from out-of-memory
  by halving the batch, then falling back to the CPU;
* :func:`run_slices` (2D/2.5D) and :func:`run_patches` (3D sliding window) generators,
  which yield progress and return an :class:`Out` (probabilities, labels, entropy and,
  with TTA, disagreement) on the working grid.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine import devices, sliding_window
from unet_engine.checkpoint import ModelCard
from unet_engine.errors import SegLoopError
from unet_engine.model import ModelSpec, UNet, fuse_for_inference, required_multiple
from unet_engine.preprocessing import context_indices, pad_to_multiple
from unet_engine.progress import CancelToken, Progress
from unet_engine.tta import labels_and_entropy, softmax_probs

log = logging.getLogger(__name__)

# ----- the prepared model and its runner ------------------------------------------------------

_PREPARED: "weakref.WeakKeyDictionary[nn.Module, tuple[Any, nn.Module]]" = weakref.WeakKeyDictionary()


def _weights_signature(model: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version, t.device.type) for t in list(model.parameters()) + list(model.buffers()))


def _module_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def prepare_model(model: nn.Module, device: torch.device, dims: int) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device``, BatchNorm folded, channels-last (cached).

    A module that is not a :class:`UNet` is used as it is when it is already in eval mode
    on ``device`` (else deep-copied); the caller's module is never changed.
    """
    key = (_weights_signature(model), str(device), dims)
    try:
        cached = _PREPARED.get(model)
    except TypeError:
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    if isinstance(model, UNet):
        prepared = fuse_for_inference(model).to(device=device, memory_format=fmt)
    elif _module_device(model) != device or model.training:
        prepared = copy.deepcopy(model).eval().to(device=device, memory_format=fmt)
    else:  # another module (e.g. a wrapper) already in place: use it as it is
        prepared = model
    if prepared is not model:  # (caching the model itself would keep it alive forever)
        try:
            _PREPARED[model] = (key, prepared)
        except TypeError:
            pass
    return prepared


def estimate_batch_size(spec: ModelSpec, sample_shape: tuple[int, ...], device: torch.device) -> int:
    """Samples per forward pass: enough to keep the device busy, few enough to fit in memory.

    On the CPU more samples only help until a batch holds ~64 K voxels per channel (small
    slices run their deep, tiny layers inefficiently one at a time; big batches of big
    slices fall out of cache): measured 64x48 -> 16-32, 128x128 -> 2-4, 256x256 -> 1. On a GPU the batch fills 40 % of the free memory (max 256).
    """
    voxels = int(np.prod(sample_shape[1:]))
    per_sample = 4 * voxels * spec.base_width * 10  # activations + skips + temporaries, fp32
    if device.type == "cpu":
        budget = min(devices.available_memory_bytes(device) // 4, 1 << 30)
        cap = max(1, min(32, (64 * 1024) // max(voxels, 1)))
    else:
        budget = int(devices.available_memory_bytes(device) * 0.4)
        cap = 256
    return int(max(1, min(cap, budget // max(per_sample, 1))))


class Runner:
    """Runs batches on the device, recovering from out-of-memory by halving, then CPU."""

    def __init__(
        self, model: nn.Module, device: torch.device, dims: int, batch_size: int, tta: bool, flip_axes: list[int] | None = None
    ) -> None:
        self.original = model
        self.dims = dims
        self.tta = tta
        self.flip_axes = flip_axes
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.model = prepare_model(model, device, dims)
        self.fmt = torch.channels_last if dims == 2 else torch.channels_last_3d

    def probs(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Softmax (and TTA disagreement) for a ``[B, C, ...]`` float32 batch, on the device."""
        xt = torch.from_numpy(x).to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return softmax_probs(self.model, xt, self.tta, self.flip_axes)
        return softmax_probs(self.model, xt, self.tta, self.flip_axes)

    def recover_from_oom(self, exc: BaseException) -> None:
        """Halve the batch; at batch 1 move to the CPU; on the CPU at batch 1, give up."""
        devices.empty_cache(self.device)
        if self.batch_size > 1:
            self.batch_size = max(1, self.batch_size // 2)
            log.warning("out of memory on %s; retrying with batch size %d", self.device, self.batch_size)
            return
        if self.device.type != "cpu":
            log.warning("out of memory on %s even at batch size 1; falling back to the CPU", self.device)
            self.device = torch.device("cpu")
            self.model = prepare_model(self.original, self.device, self.dims)
            self.batch_size = 4
            return
        raise SegLoopError(f"not enough memory to run the model, even one slice at a time on the CPU ({exc})") from exc


# ----- 2D / 2.5D and 3D cores -----------------------------------------------------------------


@dataclass
class Out:
    probs: np.ndarray  # [C, ...] on the working grid
    labels: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray | None


def _alloc(c: int, shape: tuple[int, ...], dtype: Any, tta: bool) -> Out:
    return Out(
        probs=np.empty((c, *shape), dtype),
        labels=np.empty(shape, np.uint8 if c <= 256 else np.int32),
        entropy=np.empty(shape, np.float32),
        disagreement=np.empty(shape, np.float32) if tta else None,
    )


def run_slices(
    runner: Runner, image: np.ndarray, spec: ModelSpec, axis: int, slab: slice, prob_dtype: Any, cancel: CancelToken | None
) -> Generator[Progress, None, Out]:
    """2D/2.5D: slices ``slab`` along ``axis`` of ``image``; outputs are that slab, full in-plane."""
    moved = np.moveaxis(image, axis, 0)
    n_all = moved.shape[0]
    padded, crop = pad_to_multiple(moved, required_multiple(spec), axes=(1, 2), mode="edge")
    padded = np.ascontiguousarray(padded, dtype=np.float32)
    indices = np.arange(n_all)[slab]
    n = len(indices)
    plane = moved.shape[1:]
    out = _alloc(spec.num_classes, (n, *plane), prob_dtype, runner.tta)
    done = 0
    while done < n:
        if cancel is not None:
            cancel.raise_if_cancelled("inference")
        remaining = n - done  # equal batches: 35 slices at batch 32 run as 18 + 17, not 32 + 3
        take = -(-remaining // -(-remaining // runner.batch_size))
        idx = indices[done : done + take]
        if spec.context_slices:
            batch = padded[context_indices(idx, n_all, spec.context_slices)]
        else:
            batch = padded[idx[0] : idx[-1] + 1][:, None]
        try:
            with torch.inference_mode():
                probs, dis = runner.probs(batch)
                probs = probs[(slice(None), slice(None)) + crop[1:]]
                labels, ent = labels_and_entropy(probs)
                s = slice(done, done + len(idx))
                out.probs[:, s] = probs.to(torch.float16 if prob_dtype == np.float16 else torch.float32).cpu().numpy().swapaxes(0, 1)
                out.labels[s] = labels.cpu().numpy()
                out.entropy[s] = ent.cpu().numpy()
                if dis is not None and out.disagreement is not None:
                    out.disagreement[s] = dis[(slice(None),) + crop[1:]].cpu().numpy()
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not devices.is_out_of_memory(exc):
                raise
            runner.recover_from_oom(exc)
            continue
        done += len(idx)
        yield Progress(done / n, f"{done}/{n} slices", done, n)
    if axis == 0:
        return out
    # back to [k, j, i] order, C-contiguous
    return Out(
        probs=np.ascontiguousarray(np.moveaxis(out.probs, 1, axis + 1)),
        labels=np.ascontiguousarray(np.moveaxis(out.labels, 0, axis)),
        entropy=np.ascontiguousarray(np.moveaxis(out.entropy, 0, axis)),
        disagreement=None if out.disagreement is None else np.ascontiguousarray(np.moveaxis(out.disagreement, 0, axis)),
    )


WHOLE_VOLUME_FACTOR = 2.0  # one window when the volume is at most this many training patches


def patch_size(card: ModelCard, shape: tuple[int, ...]) -> tuple[int, ...]:
    """3D inference window for a volume of ``shape``.

    The whole volume (rounded up to the network's multiple) in one window when it has at most
    ``WHOLE_VOLUME_FACTOR`` times the voxels of the card's training patch: same labels as
    tiling (hippocampus validation: Dice +0.0002) at ~1.4x the speed, since small volumes
    need no padding to a bigger patch and no second window. Larger volumes are tiled with the
    training patch, so progress and cancel keep their granularity. Without a training patch:
    the whole volume, edges capped at 128.
    """
    m = required_multiple(card.spec)
    whole = sliding_window.default_patch_size(shape, m)
    ps = card.training.get("patch_size") if isinstance(card.training, dict) else None
    if not ps:
        return whole
    train = tuple(max(m, int(np.ceil(int(p) / m) * m)) for p in ps)
    fits = all(w >= s for w, s in zip(whole, shape))
    if fits and np.prod(whole) <= WHOLE_VOLUME_FACTOR * np.prod(train):
        return whole
    return train


def run_patches(
    runner: Runner, image: np.ndarray, card: ModelCard, prob_dtype: Any, cancel: CancelToken | None
) -> Generator[Progress, None, Out]:
    """3D: Gaussian-weighted sliding window over ``image`` ``[k, j, i]``."""
    spec = card.spec
    shape = image.shape
    patch = patch_size(card, shape)
    pad = [(0, max(0, p - s)) for s, p in zip(shape, patch)]
    work = np.pad(image, pad, mode="edge") if any(p[1] for p in pad) else image
    windows = sliding_window.patch_grid(work.shape, patch, overlap=0.5)
    weight = sliding_window.gaussian_weight(patch)
    weight_t: dict[str, torch.Tensor] = {}
    c = spec.num_classes
    acc = np.zeros((c, *work.shape), np.float32)
    wsum = np.zeros(work.shape, np.float32)
    dis_acc = np.zeros(work.shape, np.float32) if runner.tta else None
    done, n = 0, len(windows)
    while done < n:
        if cancel is not None:
            cancel.raise_if_cancelled("inference")
        group = windows[done : done + runner.batch_size]
        batch = np.stack([work[w] for w in group])[:, None].astype(np.float32, copy=False)
        try:
            with torch.inference_mode():
                probs, dis = runner.probs(batch)
                key = str(runner.device)
                if key not in weight_t:
                    weight_t[key] = torch.from_numpy(weight).to(runner.device)
                wt = weight_t[key]
                probs_np = (probs * wt).cpu().numpy()
                dis_np = (dis * wt).cpu().numpy() if dis is not None else None
        except Exception as exc:  # noqa: BLE001
            if not devices.is_out_of_memory(exc):
                raise
            runner.recover_from_oom(exc)
            continue
        for b, w in enumerate(group):
            acc[(slice(None),) + w] += probs_np[b]
            wsum[w] += weight
            if dis_acc is not None and dis_np is not None:
                dis_acc[w] += dis_np[b]
        done += len(group)
        yield Progress(done / n, f"{done}/{n} patches", done, n)
    crop = tuple(slice(0, s) for s in shape)
    probs = acc[(slice(None),) + crop] / wsum[crop]
    dis_out = dis_acc[crop] / wsum[crop] if dis_acc is not None else None
    labels, ent = finalize(probs)
    return Out(probs=probs.astype(prob_dtype, copy=False), labels=labels, entropy=ent, disagreement=dis_out)


def finalize(probs: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Labels and normalised entropy of float probabilities ``[C, k, j, i]``, chunked along k."""
    k = probs.shape[1]
    labels = np.empty(probs.shape[1:], np.uint8 if probs.shape[0] <= 256 else np.int32)
    ent = np.empty(probs.shape[1:], np.float32)
    for s in range(0, k, chunk):
        lab, e = labels_and_entropy(torch.from_numpy(np.ascontiguousarray(probs[:, s : s + chunk], dtype=np.float32)), class_dim=0)
        labels[s : s + chunk] = lab.numpy()
        ent[s : s + chunk] = e.numpy()
    return labels, ent
