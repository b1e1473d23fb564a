"""Fast, cancellable inference with probabilities and per-voxel uncertainty.

:func:`predict_volume` is a generator: it yields :class:`~unet_engine.progress.Progress`
after every batch (checking the cancel token in between) and returns a
:class:`Prediction` on the input volume's grid. Drive it with
:func:`~unet_engine.progress.run_generator` or use :func:`predict_array` /
:func:`predict_slice`.

How it is fast (see ``bench/inference_bench.py``):

* 2D / 2.5D models: the volume is normalised and padded once, then many slices go
  through the network per call; slices are taken along the axis of largest spacing
  (``k`` for isotropic data). 3D models: sliding window with 50 % overlap and Gaussian
  blending, several patches per call.
* BatchNorm is folded into the convolutions (:func:`unet_engine.model.fuse_for_inference`),
  tensors are channels-last, everything runs under ``torch.inference_mode``, with fp16
  autocast on CUDA; softmax, argmax and entropy are computed on the device per batch.
* The batch is sized to the memory free on the device; a CUDA out-of-memory error halves
  it, and at batch 1 the job falls back to the CPU.

The caller's model is never modified (moved, fused or switched to eval mode): the job
works on a prepared copy, cached while the weights do not change.
"""

from __future__ import annotations

import copy
import logging
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine import devices, sliding_window
from unet_engine.checkpoint import ModelCard, load_checkpoint
from unet_engine.errors import SegLoopError
from unet_engine.model import ModelSpec, UNet, fuse_for_inference, required_multiple
from unet_engine.preprocessing import (
    context_indices,
    pad_to_multiple,
    prepare_image,
    resample_back,
    resample_to_spacing,
    slice_axis_for_spacing,
)
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.tta import flip_axes_for, labels_and_entropy, softmax_probs
from unet_engine.volume import Volume

log = logging.getLogger(__name__)

Region = tuple[slice, slice, slice]


@dataclass
class Prediction:
    """Result of inference, on the input grid (or on ``region`` of it when one was given).

    ``labels`` uint8 ``[k, j, i]``; ``probabilities`` ``[C, k, j, i]`` (float16 by default);
    ``uncertainty`` float32 normalised entropy 0..1; ``disagreement`` (TTA only) float32
    fraction of flip variants disagreeing with ``labels``.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray
    device: str
    seconds: float
    disagreement: np.ndarray | None = None
    region: Region | None = None  # where these arrays lie in the input volume; None = all of it
    batch_size: int = 0


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

    On the CPU more samples only help until a batch holds ~128 K voxels (small slices
    run their deep, tiny layers inefficiently one at a time; big batches of big slices
    fall out of cache). On a GPU the batch fills 40 % of the free memory (max 256).
    """
    voxels = int(np.prod(sample_shape[1:]))
    per_sample = 4 * voxels * spec.base_width * 10  # activations + skips + temporaries, fp32
    if device.type == "cpu":
        budget = min(devices.available_memory_bytes(device) // 4, 1 << 30)
        cap = max(1, min(32, (128 * 1024) // max(voxels, 1)))
    else:
        budget = int(devices.available_memory_bytes(device) * 0.4)
        cap = 256
    return int(max(1, min(cap, budget // max(per_sample, 1))))


class _Runner:
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
class _Out:
    probs: np.ndarray  # [C, ...] on the working grid
    labels: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray | None


def _alloc(c: int, shape: tuple[int, ...], dtype: Any, tta: bool) -> _Out:
    return _Out(
        probs=np.empty((c, *shape), dtype),
        labels=np.empty(shape, np.uint8 if c <= 256 else np.int32),
        entropy=np.empty(shape, np.float32),
        disagreement=np.empty(shape, np.float32) if tta else None,
    )


def _run_slices(
    runner: _Runner, image: np.ndarray, spec: ModelSpec, axis: int, slab: slice, prob_dtype: Any, cancel: CancelToken | None
) -> Generator[Progress, None, _Out]:
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
        idx = indices[done : done + runner.batch_size]
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
    # back to [k, j, i] order
    out.probs = np.moveaxis(out.probs, 1, axis + 1)
    out.labels = np.moveaxis(out.labels, 0, axis)
    out.entropy = np.moveaxis(out.entropy, 0, axis)
    if out.disagreement is not None:
        out.disagreement = np.moveaxis(out.disagreement, 0, axis)
    return out


def _patch_size(card: ModelCard, shape: tuple[int, ...]) -> tuple[int, ...]:
    m = required_multiple(card.spec)
    ps = card.training.get("patch_size") if isinstance(card.training, dict) else None
    if ps:
        return tuple(max(m, int(np.ceil(int(p) / m) * m)) for p in ps)
    return sliding_window.default_patch_size(shape, m)


def _run_patches(
    runner: _Runner, image: np.ndarray, card: ModelCard, prob_dtype: Any, cancel: CancelToken | None
) -> Generator[Progress, None, _Out]:
    """3D: Gaussian-weighted sliding window over ``image`` ``[k, j, i]``."""
    spec = card.spec
    shape = image.shape
    patch = _patch_size(card, shape)
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
    labels, ent = _finalize(probs)
    return _Out(probs=probs.astype(prob_dtype, copy=False), labels=labels, entropy=ent, disagreement=dis_out)


def _finalize(probs: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Labels and normalised entropy of float probabilities ``[C, k, j, i]``, chunked along k."""
    k = probs.shape[1]
    labels = np.empty(probs.shape[1:], np.uint8 if probs.shape[0] <= 256 else np.int32)
    ent = np.empty(probs.shape[1:], np.float32)
    for s in range(0, k, chunk):
        lab, e = labels_and_entropy(torch.from_numpy(np.ascontiguousarray(probs[:, s : s + chunk], dtype=np.float32)), class_dim=0)
        labels[s : s + chunk] = lab.numpy()
        ent[s : s + chunk] = e.numpy()
    return labels, ent


# ----- public API -----------------------------------------------------------------------------


def _normalise_region(region: Any, shape: tuple[int, int, int]) -> Region:
    if len(region) != 3:
        raise ValueError(f"region must be 3 slices (k, j, i), got {region!r}")
    out = []
    for sl, n in zip(region, shape):
        if isinstance(sl, (int, np.integer)):
            sl = slice(int(sl), int(sl) + 1)
        start, stop, step = sl.indices(n)
        if step != 1 or stop <= start:
            raise ValueError(f"region slices must be non-empty with step 1, got {region!r}")
        out.append(slice(start, stop))
    return tuple(out)  # type: ignore[return-value]


def _as_volume(volume: Volume | np.ndarray) -> Volume:
    if isinstance(volume, Volume):
        return volume
    arr = np.asarray(volume)
    return Volume(arr[None] if arr.ndim == 2 else arr)


def predict_volume(
    model: nn.Module,
    card: ModelCard,
    volume: Volume | np.ndarray,
    *,
    tta: bool = False,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    cancel: CancelToken | None = None,
    region: tuple[slice, slice, slice] | None = None,
    probabilities_dtype: Any = np.float16,
    axis: int | None = None,
) -> Generator[Progress, None, Prediction]:
    """Segment ``volume``; yields progress, returns a :class:`Prediction` on its grid.

    ``region`` (3 slices, k/j/i) restricts the output to that box; 2D models still see
    whole slices (so the result equals the full prediction there), 3D models a margin of
    half a patch. ``axis`` overrides the slicing axis of 2D models. ``batch_size`` None =
    sized to free memory. Raises :class:`~unet_engine.errors.CancelledError` on cancel.
    """
    t0 = time.perf_counter()
    spec = card.spec
    vol = _as_volume(volume)
    dev = devices.choose_device(device)
    shape = vol.shape
    reg = _normalise_region(region, shape) if region is not None else None
    config = card.preprocess_config
    resampling = config.target_spacing is not None
    yield Progress(0.0, "preparing image", 0, 0)
    image = prepare_image(vol, config, resample=False)
    if spec.in_channels != 2 * spec.context_slices + 1:
        raise SegLoopError(
            f"the model expects {spec.in_channels} input channels; SegLoop feeds one image channel (2.5D: neighbour slices)"
        )
    prob_dtype = np.float32 if resampling else np.dtype(probabilities_dtype).type
    flips = flip_axes_for(card) if tta else None
    if tta and not flips:
        log.warning("the model card says the model was not trained with flips: TTA runs without mirroring")
    out_box: Region | None = None  # where `out` lies in the working image, before the final crop
    if resampling:
        work = resample_to_spacing(image, vol.spacing, config.target_spacing, order=1).astype(np.float32, copy=False)
    else:
        work = image
    if spec.dims == 2:
        ax = slice_axis_for_spacing(vol.spacing) if axis is None else int(axis)
        slab = slice(None)
        if reg is not None and not resampling:
            slab = reg[ax]
            out_box = tuple(slab if a == ax else slice(0, n) for a, n in enumerate(shape))  # type: ignore[assignment]
        sample = tuple(n for a, n in enumerate(work.shape) if a != ax)
        bs = batch_size or estimate_batch_size(spec, (spec.in_channels, *sample), dev)
        runner = _Runner(model, dev, 2, bs, tta, flips)
        out = yield from _run_slices(runner, work, spec, ax, slab, prob_dtype, cancel)
    else:
        if reg is not None and not resampling:
            patch = _patch_size(card, shape)
            out_box = tuple(  # type: ignore[assignment]
                slice(max(0, r.start - p // 2), min(n, r.stop + p // 2)) for r, p, n in zip(reg, patch, shape)
            )
            work = work[out_box]
        bs = batch_size or estimate_batch_size(spec, (1, *_patch_size(card, work.shape)), dev)
        runner = _Runner(model, dev, 3, bs, tta, flips)
        out = yield from _run_patches(runner, work, card, prob_dtype, cancel)
    if resampling:  # back to the input grid, then labels/entropy from the resampled probabilities
        yield Progress(1.0, "resampling to the input grid", 0, 0)
        probs = resample_back(out.probs, shape, order=1)
        labels, ent = _finalize(probs)
        dis = resample_back(out.disagreement, shape, order=1) if out.disagreement is not None else None
        out = _Out(probs.astype(np.dtype(probabilities_dtype).type, copy=False), labels, ent, dis)
    if reg is not None:
        base = out_box or tuple(slice(0, n) for n in shape)
        local = tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(reg, base))
        out = _Out(
            np.ascontiguousarray(out.probs[(slice(None),) + local]),
            np.ascontiguousarray(out.labels[local]),
            np.ascontiguousarray(out.entropy[local]),
            None if out.disagreement is None else np.ascontiguousarray(out.disagreement[local]),
        )
    seconds = time.perf_counter() - t0
    log.info("predicted %s in %.2fs on %s (batch %d)", shape, seconds, runner.device, runner.batch_size)
    return Prediction(
        labels=out.labels,
        probabilities=out.probs,
        uncertainty=out.entropy,
        device=str(runner.device),
        seconds=seconds,
        disagreement=out.disagreement,
        region=reg,
        batch_size=runner.batch_size,
    )


def predict_array(
    model: nn.Module, card: ModelCard, array: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), **kwargs: Any
) -> Prediction:
    """Blocking convenience: segment a ``[k, j, i]`` (or 2D) array with the given spacing."""
    arr = np.asarray(array)
    vol = Volume(arr[None] if arr.ndim == 2 else arr, spacing=spacing, modality=kwargs.pop("modality", "unknown"))
    return run_generator(predict_volume(model, card, vol, **kwargs))


def predict_slice(
    model: nn.Module, card: ModelCard, volume: Volume | np.ndarray, index: int, *, axis: int | None = None, **kwargs: Any
) -> Prediction:
    """Blocking fast path: segment the one slice ``index`` along ``axis``.

    ``axis`` defaults to the model's slicing axis (largest spacing). The arrays have
    size 1 along ``axis``; ``Prediction.region`` says where they go.
    """
    vol = _as_volume(volume)
    ax = slice_axis_for_spacing(vol.spacing) if axis is None else int(axis)
    if not 0 <= index < vol.shape[ax]:
        raise IndexError(f"slice {index} is outside 0..{vol.shape[ax] - 1} along axis {ax}")
    region = tuple(slice(index, index + 1) if a == ax else slice(None) for a in range(3))
    if card.spec.dims == 2:
        kwargs.setdefault("axis", ax)
    return run_generator(predict_volume(model, card, vol, region=region, **kwargs))  # type: ignore[arg-type]


def load_model_for_inference(path: str | Path | None = "default", device: str | torch.device | None = None) -> tuple[nn.Module, ModelCard]:
    """Resolve a model name or path (see :mod:`unet_engine.model_resolver`) and load it in eval mode."""
    from unet_engine.model_resolver import resolve_model_path

    folder = resolve_model_path(None if path is None else str(path))
    dev = devices.choose_device(device)
    return load_checkpoint(folder, device=dev)
