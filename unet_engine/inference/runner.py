"""The machinery under :func:`unet_engine.inference.predict.predict_volume`.

* :func:`prepare_model`: an eval-mode, BatchNorm-folded, channels-last copy of the model on
  the device, cached while the weights do not change (the caller's model is never touched);
* :func:`device_image`: the image moved to the device once (in its own dtype) and
  normalised there; :class:`WindowedImage`: the same, normalised where it is read (the 3D
  sliding window's windows, the 2D models' runs of slices);
* :func:`estimate_batch_size`: slices/windows per forward pass for the device;
* :class:`Runner`: runs batches (fp16 autocast and cuDNN autotuning on CUDA, bf16 autocast on
  a CPU with fast bf16 convolutions), recovering
  from out-of-memory by halving the batch, then falling back to the CPU;
* :func:`run_slices` (2D/2.5D) and :func:`run_patches` (3D sliding window) generators,
  which yield progress and return an :class:`Out`: probabilities, labels and (with TTA)
  disagreement as tensors *on the device*, on the working grid. Nothing is copied to the
  host per batch; the caller copies what it needs once, at the end.
"""

from __future__ import annotations

import copy
import logging
import warnings
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unet_engine import devices

from unet_engine.inference import sliding_window

from unet_engine.inference import streaming
from unet_engine.model.checkpoint import ModelCard
from unet_engine.errors import SegLoopError
from unet_engine.model.network import ModelSpec, UNet, fuse_for_inference, required_multiple
from unet_engine.model.preprocessing import IntensityStats
from unet_engine.progress import CancelToken, Progress
from unet_engine.inference.tta import argmax_labels, flip_sets, softmax_probs
from unet_engine.volume import region3

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
        # Module.to takes memory_format (torch's documented signature); its type overloads omit it
        prepared = fuse_for_inference(model).to(device=device, memory_format=fmt)  # type: ignore[call-overload]
    elif _module_device(model) != device or model.training:
        prepared = copy.deepcopy(model).eval().to(device=device, memory_format=fmt)  # type: ignore[call-overload]
    else:  # another module (e.g. a wrapper) already in place: use it as it is
        prepared = model
    if prepared is not model:  # (caching the model itself would keep it alive forever)
        try:
            _PREPARED[model] = (key, prepared)
        except TypeError:
            pass
    return prepared


GPU_BATCH_VOXELS = 1 << 24  # a GPU batch holds at most ~16 M voxels (512^2 slices: 64, 128^3 windows: 8)


def estimate_batch_size(spec: ModelSpec, sample_shape: tuple[int, ...], device: torch.device) -> int:
    """Samples per forward pass: enough to keep the device busy, few enough to fit in memory.

    On the CPU more samples only help until a batch holds ~64 K voxels per channel (small
    slices run their deep, tiny layers inefficiently one at a time; big batches of big
    slices fall out of cache): measured 64x48 -> 16-32, 128x128 -> 2-4, 256x256 -> 1. On a
    GPU the batch fills at most 40 % of the free memory and ``GPU_BATCH_VOXELS`` (max 256).
    """
    voxels = int(np.prod(sample_shape[1:]))
    per_sample = 4 * voxels * spec.base_width * 10  # activations + skips + temporaries, fp32
    if device.type == "cpu":
        budget = min(devices.available_memory_bytes(device) // 4, 1 << 30)
        cap = max(1, min(32, (64 * 1024) // max(voxels, 1)))
    else:
        budget = int(devices.available_memory_bytes(device) * 0.4)
        cap = max(1, min(256, GPU_BATCH_VOXELS // max(voxels, 1)))
    return int(max(1, min(cap, budget // max(per_sample, 1))))


_TORCH_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64)}


def _raw_on_device(array: np.ndarray, device: torch.device) -> tuple[torch.Tensor, bool]:
    """``array`` on ``device`` in its own dtype (float32 where torch has no such dtype), and
    whether that tensor shares the caller's memory (on the CPU: never write through it)."""
    a = np.asarray(array)
    if a.dtype not in _TORCH_DTYPES or not a.dtype.isnative:
        a = a.astype(np.float32)
    with warnings.catch_warnings():  # a read-only (memory-mapped) image: never written through
        warnings.simplefilter("ignore", UserWarning)
        host = torch.from_numpy(np.ascontiguousarray(a))
    x = host.to(device)
    return x, x.data_ptr() == host.data_ptr()


class _Normaliser:
    """Normalises float32 tensors in place with ``stats`` (None: as is). Its four bounds are
    device tensors made once: a scalar tensor made per call would be a host-to-device copy,
    and on a GPU each such copy waits for all the work queued before it."""

    def __init__(self, stats: IntensityStats | None, device: torch.device, floating: bool) -> None:
        self.stats, self.floating = stats, floating
        if stats is not None and stats.scale != 0.0:
            with np.errstate(over="ignore"):  # bounds beyond float32 become +-inf, as numpy's clip sees them
                values = [np.float32(v) for v in (stats.lo, stats.hi, stats.centre, stats.scale)]
            self.lo, self.hi = float(values[0]), float(values[1])
            self.bounds = torch.tensor(np.array(values, np.float32), device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            return x
        if self.stats.scale == 0.0:
            return x.zero_()
        lo, hi, centre, scale = self.bounds
        if self.floating:  # one pass, no device sync to test first
            torch.nan_to_num_(x, nan=self.lo, posinf=self.hi, neginf=self.lo)
        x.clamp_(lo, hi)
        x.sub_(centre)
        return x.div_(scale)  # a tensor, not a scalar: true division on CUDA too


def device_image(array: np.ndarray, stats: IntensityStats | None, device: torch.device) -> torch.Tensor:
    """``array`` as a float32 tensor on ``device``, normalised there with ``stats`` (None: as is).

    The raw array crosses to the device in its own dtype (an int16 CT: half the bytes of
    float32); the result equals :func:`unet_engine.model.preprocessing.apply_intensity` (same
    float32 operations, true division).
    """
    raw, shared = _raw_on_device(array, device)
    return _Normaliser(stats, raw.device, raw.dtype.is_floating_point)(raw.to(torch.float32, copy=shared))


class WindowedImage:
    """The raw image on the device, normalised where it is read (:meth:`window`, :meth:`slab`):
    the same values as :func:`device_image` there, bit for bit (the same elementwise float32
    operations), without a normalised float32 copy of the whole volume made first, and with
    no host-to-device copy per read."""

    def __init__(self, array: np.ndarray, stats: IntensityStats | None, device: torch.device) -> None:
        self.raw, _ = _raw_on_device(array, device)
        self.normalise = _Normaliser(stats, self.raw.device, self.raw.dtype.is_floating_point)

    def window(self, box: tuple[slice, ...]) -> torch.Tensor:
        """The normalised float32 values of ``box`` (a new tensor)."""
        return self._normalised(self.raw[box])

    def slab(self, axis: int, start: int, stop: int) -> torch.Tensor:
        """The normalised slices ``start:stop`` along ``axis``: ``[stop - start, *plane]`` (a new tensor)."""
        return self._normalised(self.raw.narrow(axis, start, stop - start).movedim(axis, 0))

    def _normalised(self, raw: torch.Tensor) -> torch.Tensor:
        return self.normalise(raw.to(torch.float32, memory_format=torch.contiguous_format, copy=True))


class Runner:
    """Runs batches on the device, recovering from out-of-memory by halving, then CPU."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        dims: int,
        batch_size: int,
        tta: bool,
        flip_axes: list[int] | None = None,
        amp_dtype: torch.dtype = torch.float16,
    ) -> None:
        self.original = model
        self.dims = dims
        self.tta = tta
        self.flip_axes = flip_axes
        self.device = device
        self.amp_dtype = amp_dtype
        self.batch_size = max(1, int(batch_size))
        #: samples per forward pass; on a GPU, TTA's mirrored variants share a pass (the batch of
        #: windows/slices shrinks to keep the samples per pass, and so the memory, as without TTA)
        self.pass_size = self.batch_size
        if tta and device.type == "cuda":
            self.batch_size = max(1, self.batch_size // len(flip_sets(dims, flip_axes)))
        self.model = prepare_model(model, device, dims)
        self.fmt = torch.channels_last if dims == 2 else torch.channels_last_3d

    @property
    def cpu_bf16(self) -> bool:
        """bfloat16 autocast on a CPU whose bfloat16 convolutions are fast (AMX), as float16 on CUDA."""
        return self.device.type == "cpu" and devices.cpu_bf16_is_fast()

    @property
    def precision(self) -> str:
        """The network's arithmetic: ``float16`` (CUDA autocast), ``bfloat16`` (fast-bf16 CPU) or ``float32``."""
        if self.device.type == "cuda":
            return str(self.amp_dtype).removeprefix("torch.")
        return "bfloat16" if self.cpu_bf16 else "float32"

    def probs(self, x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Softmax ``[B, C, ...]`` float32 (and TTA disagreement) of a ``[B, C, ...]`` batch, on the device."""
        xt = torch.as_tensor(x).to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        if self.device.type == "cuda":
            cudnn = torch.backends.cudnn
            before, cudnn.benchmark = cudnn.benchmark, True  # fixed window/slice shapes: autotuned kernels pay
            try:
                with torch.autocast("cuda", dtype=self.amp_dtype):
                    return softmax_probs(self.model, xt, self.tta, self.flip_axes, max_batch=self.pass_size)
            finally:
                cudnn.benchmark = before
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_bf16):
            return softmax_probs(self.model, xt, self.tta, self.flip_axes)

    def recover_from_oom(self, exc: BaseException) -> None:
        """Halve the batch; at batch 1 move to the CPU; on the CPU at batch 1, give up."""
        devices.empty_cache(self.device)
        if self.pass_size > 1 and self.pass_size > self.batch_size:  # TTA variants share a pass: fewer
            self.pass_size = max(self.batch_size, self.pass_size // 2)
            log.warning("out of memory on %s; retrying with %d samples per pass", self.device, self.pass_size)
            return
        if self.batch_size > 1:
            self.batch_size = self.pass_size = max(1, self.batch_size // 2)
            log.warning("out of memory on %s; retrying with batch size %d", self.device, self.batch_size)
            return
        if self.device.type != "cpu":
            log.warning("out of memory on %s even at batch size 1; falling back to the CPU", self.device)
            self.device = torch.device("cpu")
            self.model = prepare_model(self.original, self.device, self.dims)
            self.batch_size = self.pass_size = 4
            return
        raise SegLoopError(f"not enough memory to run the model, even one slice at a time on the CPU ({exc})") from exc


def _oom_or_raise(runner: Runner, exc: BaseException) -> bool:
    """Handle an exception from a batch: re-raise anything but out-of-memory; True when the
    runner moved to another device (the job restarts there)."""
    if not devices.is_out_of_memory(exc):
        raise exc
    before = runner.device
    runner.recover_from_oom(exc)
    return runner.device != before


# ----- 2D / 2.5D and 3D cores -----------------------------------------------------------------


@dataclass
class Out:
    """Core results on the working grid, as tensors on the device (views allowed)."""

    probs: torch.Tensor  # [C, ...] float32
    labels: torch.Tensor  # uint8 (int32 beyond 256 classes)
    disagreement: torch.Tensor | None


def _centred_pads(n: int, multiple: int) -> tuple[int, int]:
    extra = (-n) % multiple
    return extra // 2, extra - extra // 2


def run_slices(
    runner: Runner,
    image: np.ndarray,
    stats: IntensityStats | None,
    spec: ModelSpec,
    axis: int,
    slab: slice,
    cancel: CancelToken | None,
    focus: int | None = None,
    mapper: streaming.CellMapper | None = None,
) -> Generator[Progress, None, Out]:
    """2D/2.5D: slices ``slab`` along ``axis`` of ``image``; outputs are that slab, full in-plane.

    The raw volume is on the device; each batch of slices (with their 2.5D neighbours) is
    gathered there, normalised and padded in-plane (edge, centred as
    :func:`unet_engine.model.preprocessing.pad_to_multiple`), and its probabilities written into one
    preallocated ``[C, n, H, W]`` tensor. ``focus`` (an output position): the batch holding
    it first, then outward; ``mapper`` turns each finished batch into partial results
    (:mod:`unet_engine.inference.streaming`).
    """
    n_all = image.shape[axis]
    plane = tuple(n for a, n in enumerate(image.shape) if a != axis)
    indices = np.arange(n_all)[slab]
    n = len(indices)
    m = required_multiple(spec)
    (ph0, ph1), (pw0, pw1) = (_centred_pads(s, m) for s in plane)
    crop = (slice(ph0, ph0 + plane[0]), slice(pw0, pw0 + plane[1]))

    def gather(idx: np.ndarray) -> torch.Tensor:
        """The batch for the consecutive output slices ``idx``: ``[B, channels, H, W]``, normalised
        as read (each slice once), 2.5D neighbours clamped at the ends, padded in-plane; the
        neighbour indices are made on the device (no host copy, no wait for the device)."""
        lo, hi, c = int(idx[0]), int(idx[-1]) + 1, spec.context_slices
        assert hi - lo == len(idx), "a batch is a run of consecutive slices"
        first, last = max(0, lo - c), min(n_all, hi + c)
        block = src.slab(axis, first, last)
        if c:
            dev = block.device
            near = torch.arange(lo, hi, device=dev)[:, None] + torch.arange(-c, c + 1, device=dev)
            batch = block[near.clamp_(0, n_all - 1) - first]
        else:
            batch = block[:, None]
        return F.pad(batch, (pw0, pw1, ph0, ph1), mode="replicate") if ph0 + ph1 + pw0 + pw1 else batch

    def setup() -> tuple[WindowedImage, torch.Tensor, torch.Tensor | None, list[tuple[int, int]]]:
        src = WindowedImage(image, stats, runner.device)
        probs = torch.empty((spec.num_classes, n, *plane), dtype=torch.float32, device=runner.device)
        dis = torch.empty((n, *plane), dtype=torch.float32, device=runner.device) if runner.tta else None
        chunks = streaming.batch_plan(n, runner.batch_size)
        order = range(len(chunks)) if focus is None else streaming.nearest_first(chunks, focus)
        if mapper is not None:
            mapper.reset([list(range(n + 1)) if a == axis else [0, s] for a, s in enumerate(out_shape)])
        return src, probs, dis, [chunks[i] for i in order]

    def box_probs(box: tuple[slice, ...]) -> torch.Tensor:
        return out_probs.movedim(1, axis + 1)[(slice(None), *box)]

    out_shape = tuple(n if a == axis else s for a, s in enumerate(image.shape))

    src, out_probs, out_dis, queue = setup()
    done = 0
    while queue:
        if cancel is not None:
            cancel.raise_if_cancelled("inference")
        s0, s1 = queue[0]
        idx = indices[s0:s1]
        try:
            with torch.inference_mode():
                probs, dis = runner.probs(gather(idx))
                s = slice(s0, s1)
                out_probs[:, s] = probs[(slice(None), slice(None), *crop)].transpose(0, 1)
                if dis is not None and out_dis is not None:
                    out_dis[s] = dis[(slice(None), *crop)]
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if _oom_or_raise(runner, exc):
                src, out_probs, out_dis, queue = setup()
                done = 0
            else:  # a smaller batch: split this one
                queue[:1] = streaming.batch_plan(s1 - s0, runner.batch_size, start=s0)
            continue
        queue.pop(0)
        done += s1 - s0
        box = region3(slice(s0, s1) if a == axis else slice(0, s) for a, s in enumerate(out_shape))
        partials = mapper([box], box_probs) if mapper is not None else []
        yield from streaming.reports(done / n, f"{done}/{n} slices", done, n, partials)
    with torch.inference_mode():
        labels = argmax_labels(out_probs)
    # back to [k, j, i] order (views; the caller copies what it needs)
    return Out(
        probs=out_probs.movedim(1, axis + 1),
        labels=labels.movedim(0, axis),
        disagreement=None if out_dis is None else out_dis.movedim(0, axis),
    )


WHOLE_VOLUME_FACTOR = 2.0  # one window when the volume is at most this many training patches
WINDOW_VOXELS = {"cpu": 1 << 20, "default": 1 << 21}  # sliding-window size budget per device type


def patch_size(card: ModelCard, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The 3D context patch for a volume of ``shape``.

    The whole volume (rounded up to the network's multiple) in one window when it has at most
    ``WHOLE_VOLUME_FACTOR`` times the voxels of the card's training patch: same labels as
    tiling (hippocampus validation: Dice +0.0002) at ~1.4x the speed, since small volumes
    need no padding to a bigger patch and no second window. Larger volumes: the card's
    training patch (:func:`window_size` grows the sliding window from it). Without a
    training patch: the whole volume, edges capped at 128.
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


def window_size(
    card: ModelCard, shape: tuple[int, ...], device: torch.device, overlap: float = sliding_window.DEFAULT_OVERLAP
) -> tuple[int, ...]:
    """The sliding window for a volume of ``shape`` on ``device``.

    The whole volume when :func:`patch_size` says so; else the training patch grown to
    ``WINDOW_VOXELS`` (1 M voxels on the CPU, 2 M elsewhere) and spread evenly
    (:func:`unet_engine.inference.sliding_window.grow_window`): fewer, bigger windows, each faster per
    voxel, and less overlap recomputed.
    """
    patch = patch_size(card, shape)
    if all(p >= s for p, s in zip(patch, shape)):
        return patch
    budget = WINDOW_VOXELS.get(device.type, WINDOW_VOXELS["default"])
    return sliding_window.grow_window(shape, patch, required_multiple(card.spec), max(budget, int(np.prod(patch))), overlap)


def run_patches(
    runner: Runner,
    image: np.ndarray,
    stats: IntensityStats | None,
    card: ModelCard,
    cancel: CancelToken | None,
    overlap: float = sliding_window.DEFAULT_OVERLAP,
    window: tuple[int, ...] | None = None,
    focus: tuple[int, tuple[int, ...]] | None = None,
    mapper: streaming.CellMapper | None = None,
) -> Generator[Progress, None, Out]:
    """3D: Gaussian-weighted sliding window over ``image`` ``[k, j, i]``, on the device.

    The normalised image is edge-padded at the end up to the window where it is smaller;
    windows are gathered ``runner.batch_size`` at a time and blended into one preallocated
    accumulator (:class:`unet_engine.inference.sliding_window.Blender`; with TTA the disagreement is
    one more channel of it). ``window`` None: :func:`window_size`. ``focus`` ``(axis,
    voxel)``: the batches covering the plane of ``axis`` through ``voxel`` first, nearest it
    first, blended in the original order (:class:`unet_engine.inference.streaming.OrderedBlend`);
    ``mapper`` turns each finished cell into partial results.
    """
    spec = card.spec
    shape = tuple(image.shape)
    patch = tuple(window) if window is not None else window_size(card, shape, runner.device, overlap)
    pad = [max(0, p - s) for s, p in zip(shape, patch)]
    work_shape = tuple(s + p for s, p in zip(shape, pad))
    starts = sliding_window.axis_starts(work_shape, patch, overlap)
    windows = sliding_window.grid_windows(starts, patch)
    c = spec.num_classes
    ax = 0 if focus is None else focus[0]

    def setup() -> tuple[Callable[[tuple[slice, ...]], torch.Tensor], sliding_window.Blender,
                         streaming.OrderedBlend | None, list[list[int]]]:
        if any(pad):  # smaller than a window: normalised whole and edge-padded
            x = F.pad(device_image(image, stats, runner.device)[None, None], (0, pad[2], 0, pad[1], 0, pad[0]),
                      mode="replicate")[0, 0]
            read: Callable[[tuple[slice, ...]], torch.Tensor] = x.__getitem__
        else:  # normalised window by window: the first window starts without a pass over the volume
            read = WindowedImage(image, stats, runner.device).window
        # streamed: every cell's first window is copied in, so the accumulator needs no zeroing first
        blender = sliding_window.Blender(c + int(runner.tta), work_shape, patch, starts, runner.device,
                                         zeroed=focus is None)
        ordered = None if focus is None else streaming.OrderedBlend(blender, windows)
        groups = streaming.window_groups(windows, runner.batch_size, ax, None if focus is None else focus[1])
        if mapper is not None:
            mapper.reset(streaming.cuts_of(windows, shape))
        return read, blender, ordered, groups

    def box_probs(box: tuple[slice, ...]) -> torch.Tensor:
        return blender.normalised(box)[:c]

    read, blender, ordered, queue = setup()
    done, n = 0, len(windows)
    while queue:
        if cancel is not None:
            cancel.raise_if_cancelled("inference")
        group = queue[0]
        finished: list[tuple[int, ...]] = []
        try:
            with torch.inference_mode():
                batch = torch.stack([read(windows[i]) for i in group])[:, None]
                probs, dis = runner.probs(batch)
                values = probs if dis is None else torch.cat([probs, dis[:, None]], dim=1)
                if ordered is None:
                    blender.add(values, [windows[i] for i in group])
                else:
                    finished = ordered.add(values, group)
        except Exception as exc:  # noqa: BLE001
            if _oom_or_raise(runner, exc):
                read, blender, ordered, queue = setup()
                done = 0
            else:  # a smaller batch: split this one
                queue[:1] = [group[i : i + runner.batch_size] for i in range(0, len(group), runner.batch_size)]
            continue
        queue.pop(0)
        done += len(group)
        partials = []
        if mapper is not None and ordered is not None:
            boxes = [region3(slice(b.start, min(b.stop, s)) for b, s in zip(ordered.box(cell), shape)) for cell in finished]
            partials = mapper([b for b in boxes if all(s.start < s.stop for s in b)], box_probs)
        yield from streaming.reports(done / n, f"{done}/{n} patches", done, n, partials)
    with torch.inference_mode():
        acc = blender.result()[(slice(None), *(slice(0, s) for s in shape))]
        probs = acc[:c]
        labels = argmax_labels(probs)
    return Out(probs=probs, labels=labels, disagreement=acc[c] if runner.tta else None)
