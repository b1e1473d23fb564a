"""Fast, cancellable inference with probabilities and per-voxel uncertainty.

:func:`predict_volume` is a generator: it yields :class:`~unet_engine.progress.Progress`
after every batch (checking the cancel token in between) and returns a
:class:`Prediction` on the input volume's grid. Drive it with
:func:`~unet_engine.progress.run_generator` or use :func:`predict_array` /
:func:`predict_slice`.

How it is fast (see ``bench/full_size_bench.py``, ``bench/gpu_bench.py``, ``bench/inference_bench.py``):

* The raw image goes to the device once, in its own dtype, and is normalised there
  (:func:`~unet_engine.inference.runner.device_image`); intensity statistics come from a
  subsample of the whole image on the host.
* 2D / 2.5D models: the volume is padded in-plane once, then batches of slices (with their
  2.5D neighbours) are gathered on the device; slices are taken along the axis of largest
  spacing (``k`` for isotropic data). 3D models: one window over the whole volume when it is
  at most twice the training patch (:func:`unet_engine.inference.runner.patch_size`), else a
  sliding window grown from the training patch to ~1 M voxels on the CPU, ~2 M on a GPU
  (:func:`~unet_engine.inference.runner.window_size`), ``overlap`` 0.25 of the window,
  Gaussian blending (sigma 1/8 of the window) into one preallocated accumulator on the
  device (:class:`unet_engine.inference.sliding_window.Blender`), several windows per call.
* BatchNorm is folded into the convolutions (:func:`unet_engine.model.network.fuse_for_inference`),
  tensors are channels-last, everything runs under ``torch.inference_mode``, with fp16
  autocast and cuDNN autotuning on CUDA, and bf16 autocast on a CPU that runs it fast
  (:func:`unet_engine.devices.cpu_bf16_is_fast`).
* Nothing crosses to the host per batch: labels are computed on the device at the end and
  copied once; probabilities, uncertainty and disagreement stay on the device until a
  caller reads them from the :class:`Prediction`.
* The batch is sized to the memory free on the device; a CUDA out-of-memory error halves
  it, and at batch 1 the job restarts on the CPU.
* View first (``focus=``): the work nearest the voxel in view runs first and finished parts
  stream out as final labels (:mod:`unet_engine.inference.streaming`; ``bench/streaming_bench.py``).
* Models that resample (the card's ``target_spacing``): the image is resampled on the device
  slab by slab (only the part a ``region`` needs), and the probabilities come back slab by
  slab straight into labels and entropy; the full-resolution probabilities are built only
  when a caller reads them (:mod:`unet_engine.inference.resampling`; ``bench/resample_bench.py``).

The caller's model is never modified (moved, fused or switched to eval mode): the job
works on a prepared copy, cached while the weights do not change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine import devices
from unet_engine.model.checkpoint import ModelCard
from unet_engine.errors import SegLoopError
from unet_engine.inference.runner import (  # noqa: F401 - estimate_batch_size / prepare_model re-exported
    Out,
    Runner,
    device_image,
    estimate_batch_size,
    patch_size,
    prepare_model,
    run_patches,
    run_slices,
    window_size,
)
from unet_engine.model.preprocessing import (
    IntensityStats,
    image_array,
    intensity_stats,
    resampled_shape,
    slice_axis_for_spacing,
)
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.inference.resampling import BackProjection, Resampler, resample_image
from unet_engine.inference.sliding_window import DEFAULT_OVERLAP
from unet_engine.inference.streaming import CellMapper, PartialLabels, PartialProgress  # noqa: F401 - re-exported
from unet_engine.inference.tta import entropy_map, flip_axes_for
from unet_engine.volume import Region, Volume, region3, whole_region

log = logging.getLogger(__name__)



class Prediction:
    """Result of inference, on the input grid (or on ``region`` of it when one was given).

    ``labels`` uint8 ``[k, j, i]`` (on the host); ``probabilities`` ``[C, k, j, i]``
    (``probabilities_dtype``, float16 by default); ``uncertainty`` float32 normalised
    entropy 0..1; ``disagreement`` (TTA only) float32 fraction of flip variants disagreeing
    with ``labels``. Probabilities and disagreement stay on the device where inference ran
    until first read (then copied to the host once); the uncertainty is computed there
    from them on first read. :meth:`probabilities_tensor` gives the device tensor itself.
    For a model that resamples, ``resampled`` holds them on the model's grid and they are
    brought to the input grid slab by slab on first read (the uncertainty comes computed).
    """

    def __init__(
        self,
        labels: np.ndarray,
        probabilities: torch.Tensor | np.ndarray | None,
        device: str,
        seconds: float,
        *,
        uncertainty: np.ndarray | None = None,
        disagreement: torch.Tensor | np.ndarray | None = None,
        region: Region | None = None,
        batch_size: int = 0,
        probabilities_dtype: Any = np.float16,
        window: tuple[int, ...] | None = None,
        resampled: BackProjection | None = None,
        precision: str = "float32",
        memory: devices.MemoryUse | None = None,
    ) -> None:
        if probabilities is None and resampled is None:
            raise ValueError("a Prediction needs probabilities or a resampled back projection")
        self.labels = labels
        self.device = device
        self.precision = precision  # the network's arithmetic: float32, or float16 / bfloat16 autocast
        self.memory = memory  # the GPU memory the prediction (model included) used at most; None off a GPU
        self.seconds = seconds
        self.region = region  # where these arrays lie in the input volume; None = all of it
        self.batch_size = batch_size
        self.window = window  # the 3D sliding window used (None: 2D model)
        self._resampled = resampled
        self._probs = None if probabilities is None else torch.as_tensor(probabilities)
        self._dis = None if disagreement is None else torch.as_tensor(disagreement)
        self._dtype = np.dtype(probabilities_dtype)
        self._host_probs: np.ndarray | None = None
        self._host_dis: np.ndarray | None = None
        self._uncertainty = uncertainty

    def __repr__(self) -> str:
        return f"Prediction(shape={self.labels.shape}, device={self.device!r}, seconds={self.seconds:.3f}, region={self.region})"

    def probabilities_tensor(self) -> torch.Tensor:
        """The float32 probabilities ``[C, k, j, i]`` where inference ran (no copy; may be a view;
        for a model that resamples, built on the first call and kept)."""
        if self._probs is None:
            assert self._resampled is not None
            self._probs = self._resampled.tensor()
        return self._probs

    @property
    def probabilities(self) -> np.ndarray:
        if self._host_probs is None:
            if self._probs is None and self._resampled is not None:  # slab by slab: no float32 copy of the whole
                self._host_probs = self._resampled.to_host(self._resampled.probs, self._dtype, _TORCH_OF.get(self._dtype))
            else:
                self._host_probs = _to_host(self.probabilities_tensor(), self._dtype)
        return self._host_probs

    @property
    def uncertainty(self) -> np.ndarray:
        if self._uncertainty is None:
            with torch.inference_mode():
                self._uncertainty = _to_host(entropy_map(self.probabilities_tensor()), np.dtype(np.float32))
        return self._uncertainty

    @property
    def disagreement(self) -> np.ndarray | None:
        if self._host_dis is None:
            if self._dis is not None:
                self._host_dis = _to_host(self._dis, np.dtype(np.float32))
            elif self._resampled is not None and self._resampled.dis is not None:
                self._host_dis = self._resampled.to_host(self._resampled.dis, np.dtype(np.float32), torch.float32)
        return self._host_dis


_TORCH_OF = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _to_host(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous host array of ``t`` in ``dtype`` (cast on the device first: fewer bytes cross)."""
    tt = _TORCH_OF.get(dtype)
    with torch.inference_mode():
        if tt is not None:
            t = t.to(tt)
        out = t.contiguous().cpu().numpy()
    return np.ascontiguousarray(out, dtype=dtype)


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
    return region3(out)


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
    overlap: float = DEFAULT_OVERLAP,
    window: tuple[int, int, int] | None = None,
    focus: tuple[int, int, int] | None = None,
    focus_axis: int | None = None,
) -> Generator[Progress, None, Prediction]:
    """Segment ``volume``; yields progress, returns a :class:`Prediction` on its grid.

    ``region`` (3 slices, k/j/i) restricts the output to that box; 2D models still see
    whole slices (so the result equals the full prediction there), 3D models a margin of
    half a training patch. ``axis`` overrides the slicing axis of 2D models. ``batch_size``
    None = sized to free memory. 3D models: ``overlap`` of neighbouring sliding windows (a
    fraction of the window, 0..<1) and ``window`` (None: :func:`window_size`). Raises
    :class:`~unet_engine.errors.CancelledError` on cancel.

    ``focus`` (a voxel ``(k, j, i)``; ``focus_axis``: the plane in view, default 0) streams:
    the work nearest it runs first, and finished parts are yielded as
    :class:`~unet_engine.inference.streaming.PartialProgress` with final labels
    (:mod:`unet_engine.inference.streaming`); the returned prediction is the same as without a focus.
    """
    t0 = time.perf_counter()
    spec = card.spec
    if spec.in_channels != 2 * spec.context_slices + 1:
        raise SegLoopError(
            f"the model expects {spec.in_channels} input channels; SegLoop feeds one image channel (2.5D: neighbour slices)"
        )
    vol = _as_volume(volume)
    dev = devices.choose_device(device)
    peak = devices.PeakMemory(dev)
    shape = vol.shape
    reg = _normalise_region(region, shape) if region is not None else None
    config = card.preprocess_config
    if cancel is not None:
        cancel.raise_if_cancelled("inference")
    yield Progress(0.0, "preparing image", 0, 0)
    raw, _, modality = image_array(vol)
    stats: IntensityStats = intensity_stats(raw, config, modality)  # always from the whole image
    rshape = shape if config.target_spacing is None else resampled_shape(shape, vol.spacing, config.target_spacing)
    resampling = tuple(rshape) != tuple(shape)
    flips = flip_axes_for(card) if tta else None
    if tta and not flips:
        log.warning("the model card says the model was not trained with flips: TTA runs without mirroring")
    out_box: Region | None = None  # no resampling: where `out` lies in the input grid (None: all of it)
    wbox: tuple[slice, ...] | None = None  # resampling: where `out` lies on the model's grid
    work = raw  # what the core reads; normalised with `work_stats` on the device
    work_stats: IntensityStats | None = stats
    if resampling:  # only the model-grid voxels the output reads (plus the context below) are resampled
        fwd, back = Resampler(shape, rshape), Resampler(rshape, shape)
        need = back.reads(reg or whole_region(shape))
        work_stats = None
    used_window: tuple[int, ...] | None = None
    if spec.dims == 2:
        ax = slice_axis_for_spacing(vol.spacing) if axis is None else int(axis)
        slab = slice(None)
        if resampling:  # whole slices: the ones read and their 2.5D neighbours
            c = spec.context_slices
            ext = _widened(need[ax], c, rshape[ax])
            src = tuple(ext if a == ax else slice(0, n) for a, n in enumerate(rshape))
            work = yield from _resample_in(raw, stats, fwd, src, dev, cancel)
            slab = slice(need[ax].start - ext.start, need[ax].stop - ext.start)
            wbox = tuple(need[ax] if a == ax else s for a, s in enumerate(src))
        elif reg is not None:  # only the slices needed: the region's and their 2.5D neighbours
            c = spec.context_slices
            ext = _widened(reg[ax], c, shape[ax])
            work = raw[tuple(ext if a == ax else slice(None) for a in range(3))]
            slab = slice(reg[ax].start - ext.start, reg[ax].stop - ext.start)
            out_box = region3(reg[ax] if a == ax else slice(0, n) for a, n in enumerate(shape))
        sample = tuple(n for a, n in enumerate(work.shape) if a != ax)
        bs = batch_size or estimate_batch_size(spec, (spec.in_channels, *sample), dev)
        runner = Runner(model, dev, 2, bs, tta, flips)
        mapper = _mapper(shape, out_box, reg, rshape if resampling else None, wbox) if focus is not None else None
        pos = mapper.focus_index(_clamped(focus, shape))[ax] if mapper is not None else None
        out = yield from run_slices(runner, work, work_stats, spec, ax, slab, cancel, pos, mapper)
    else:
        if resampling:  # the part read plus half a training patch of context on each side
            wbox = whole_region(rshape)
            if reg is not None:
                patch = patch_size(card, rshape)
                wbox = tuple(_widened(r, p // 2, n) for r, p, n in zip(need, patch, rshape))
            work = yield from _resample_in(raw, stats, fwd, wbox, dev, cancel)
        elif reg is not None:  # the region plus half a patch of context on each side
            patch = patch_size(card, shape)
            out_box = region3(_widened(r, p // 2, n) for r, p, n in zip(reg, patch, shape))
            work = raw[out_box]
        used_window = tuple(window) if window is not None else window_size(card, work.shape, dev, overlap)
        bs = batch_size or estimate_batch_size(spec, (1, *used_window), dev)
        runner = Runner(model, dev, 3, bs, tta, flips)
        fa = 0 if focus_axis is None else int(focus_axis)
        if not 0 <= fa < 3:
            raise ValueError(f"focus_axis must be 0, 1 or 2, got {focus_axis}")
        mapper = _mapper(shape, out_box, reg, rshape if resampling else None, wbox) if focus is not None else None
        at = (fa, mapper.focus_index(_clamped(focus, shape))) if mapper is not None else None
        out = yield from run_patches(runner, work, work_stats, card, cancel, overlap=overlap, window=used_window,
                                     focus=at, mapper=mapper)
    uncertainty: np.ndarray | None = None
    projection: BackProjection | None = None
    if resampling:  # back to the input grid slab by slab, straight into labels and entropy
        assert wbox is not None
        projection = BackProjection(back, [b.start for b in wbox], reg or whole_region(shape), out.probs, out.disagreement)
        labels_host, uncertainty = yield from projection.finish(cancel)
    else:
        if reg is not None:
            base = out_box or whole_region(shape)
            local = tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(reg, base))
            dis = None if out.disagreement is None else out.disagreement[local]
            out = Out(out.probs[(slice(None), *local)], out.labels[local], dis)
        with torch.inference_mode():
            labels_host = np.ascontiguousarray(out.labels.contiguous().cpu().numpy())  # the one copy every caller needs
    seconds = time.perf_counter() - t0
    memory = peak.stop()
    log.info("predicted %s in %.2fs on %s (batch %d, window %s%s)", shape, seconds,
             devices.run_description(str(runner.device), runner.precision, memory), runner.batch_size,
             used_window, f", model grid {tuple(work.shape)} of {tuple(rshape)}" if resampling else "")
    return Prediction(
        labels_host,
        None if projection is not None else out.probs,
        str(runner.device),
        seconds,
        uncertainty=uncertainty,
        disagreement=None if projection is not None else out.disagreement,
        region=reg,
        batch_size=runner.batch_size,
        probabilities_dtype=probabilities_dtype,
        window=used_window,
        resampled=projection,
        precision=runner.precision,
        memory=memory,
    )


def _resample_in(raw: np.ndarray, stats: IntensityStats, fwd: Resampler, box: tuple[slice, ...], device: torch.device,
                 cancel: CancelToken | None) -> Generator[Progress, None, np.ndarray]:
    """``box`` of the model's grid: the raw rows it reads normalised and resampled on ``device``,
    slab by slab (on the CPU after an out-of-memory error there)."""

    def on(dev: torch.device) -> Generator[Progress, None, np.ndarray]:
        return resample_image(lambda src: device_image(raw[src], stats, dev), fwd, box, dev, cancel)

    try:
        return (yield from on(device))
    except Exception as exc:
        if device.type == "cpu" or not devices.is_out_of_memory(exc):
            raise
        devices.empty_cache(device)
        log.warning("out of memory resampling the image on %s; resampling on the CPU", device)
        return (yield from on(torch.device("cpu")))


def _widened(s: slice, margin: int, n: int) -> slice:
    """``s`` with ``margin`` more voxels on each side, within ``0..n`` (context for a part)."""
    return slice(max(0, s.start - margin), min(n, s.stop + margin))


def _clamped(focus: Any, shape: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(int(np.clip(int(c), 0, n - 1)) for c, n in zip(focus, shape))


def _mapper(shape: tuple[int, int, int], box: Region | None, reg: Region | None,
            resampled: tuple[int, ...] | None, work_box: tuple[slice, ...] | None) -> CellMapper:
    """Maps finished working-grid cells to input-grid partial labels."""
    return CellMapper(shape, box, reg, None if resampled is None else tuple(resampled), work_box)


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
    region = region3(slice(index, index + 1) if a == ax else slice(None) for a in range(3))
    if card.spec.dims == 2:
        kwargs.setdefault("axis", ax)
    return run_generator(predict_volume(model, card, vol, region=region, **kwargs))

