"""Linear resampling between the input grid and a model's grid, in chunks, on the device.

Models whose card sets ``target_spacing`` run on a resampled grid. :func:`predict_volume
<unet_engine.inference.predict.predict_volume>` resamples the image there and the
probabilities back with :class:`Resampler`: separable linear interpolation with voxel
*edges* aligned, as ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")`` (the
training path, :func:`unet_engine.model.preprocessing.resample_to_shape`) and
``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)`` do it: output
voxel ``o`` of an axis reads the source at ``x = (o + 0.5) * n_in / n_out - 0.5``, clamped
to the edge voxels. Coordinates and weights are computed once in float64; the arithmetic
is float32 on the device (results within ~1e-7 of ndimage's float64 sums).

Every output voxel is computed from its own two source values per axis by the same
elementwise operations (``a + (b - a) * t``, never fused), with the axes in one fixed order
per :class:`Resampler`, so a box of the output is **bit-identical** whatever box or chunk it
is computed in: the whole image, a region, a slab, or a streamed part
(:class:`unet_engine.inference.streaming.CellMapper`). Work goes in slabs (:func:`slabs`) so
memory stays bounded: the image is never normalised whole on the host, and probabilities
come back straight into labels and entropy (:meth:`BackProjection.finish`); the
full-resolution ``[C, *input]`` probabilities exist only when a caller reads them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unet_engine.progress import CancelToken, Progress
from unet_engine.inference.tta import labels_and_entropy

Region = tuple[slice, ...]
#: Values per slab (voxels x channels, the more of what a slab reads and writes): small on the
#: CPU (measured fastest at 2 M on 2 cores: the slab stays in cache), large on a GPU.
SLAB_VOXELS = {"cpu": 1 << 21, "default": 1 << 24}
GATHER_COST = 3  # an interpolation step along the last (contiguous) axis gathers single elements: ~3x a row copy


@dataclass(frozen=True)
class AxisMap:
    """Linear interpolation along one axis: output ``o`` = ``src[lo[o]] + (src[hi[o]] - src[lo[o]]) * t[o]``."""

    n_in: int
    n_out: int
    lo: np.ndarray  # int64 [n_out]
    hi: np.ndarray  # int64 [n_out]
    t: np.ndarray  # float32 [n_out]; 0 where lo == hi (clamped at an edge)

    @property
    def identity(self) -> bool:
        return self.n_in == self.n_out


def axis_map(n_in: int, n_out: int) -> AxisMap:
    """The :class:`AxisMap` from ``n_in`` to ``n_out`` voxels, voxel edges aligned (``grid_mode``)."""
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (np.float64(n_in) / np.float64(n_out)) - 0.5
    f = np.floor(x)
    lo = np.clip(f, 0, n_in - 1).astype(np.int64)
    hi = np.clip(f + 1, 0, n_in - 1).astype(np.int64)
    t = np.where(lo == hi, 0.0, x - f).astype(np.float32)
    return AxisMap(int(n_in), int(n_out), lo, hi, t)


def _order(maps: Sequence[AxisMap]) -> tuple[int, ...]:
    """The order of the interpolated axes that touches the fewest values (shrink first, grow last;
    the last axis, whose gathers are elementwise, where it is smallest)."""
    axes = [a for a, m in enumerate(maps) if not m.identity]
    last = len(maps) - 1

    def cost(order: tuple[int, ...]) -> float:
        size = [m.n_in for m in maps]
        total = 0.0
        for a in order:
            size[a] = maps[a].n_out
            total += float(np.prod(size)) * (GATHER_COST if a == last else 1)
        return total

    return min(itertools.permutations(axes), key=cost) if axes else ()


class Resampler:
    """Linear resampling from ``src_shape`` to ``dst_shape`` (the last three axes of a tensor)."""

    def __init__(self, src_shape: Sequence[int], dst_shape: Sequence[int]) -> None:
        self.src_shape = tuple(int(n) for n in src_shape)
        self.dst_shape = tuple(int(n) for n in dst_shape)
        self.maps = [axis_map(s, d) for s, d in zip(self.src_shape, self.dst_shape)]
        self.order = _order(self.maps)  # fixed: every box is computed the same way
        self._on_device: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def reads(self, box: Region) -> Region:
        """The source box that the output ``box`` reads."""
        out = []
        for m, b in zip(self.maps, box):
            if m.identity:
                out.append(slice(b.start, b.stop))
            else:
                out.append(slice(int(m.lo[b.start]), int(m.hi[b.stop - 1]) + 1))
        return tuple(out)

    def __call__(self, src: torch.Tensor, src_start: Sequence[int], box: Region) -> torch.Tensor:
        """The values on output ``box`` from ``src`` ``[..., *s]``, a source box starting at
        ``src_start`` that covers :meth:`reads` of ``box`` (a new float tensor on ``src``'s device)."""
        lead = src.ndim - len(self.maps)
        x = src
        for a, m in enumerate(self.maps):  # identity axes: a view of the rows wanted
            if m.identity:
                x = x.narrow(lead + a, box[a].start - src_start[a], box[a].stop - box[a].start)
        if not self.order:
            return x.clone()
        for a in self.order:
            b, dim = box[a], lead + a
            lo_all, hi_all, t_all = self._axis_on(x.device, a)
            lo, hi = lo_all[b] - src_start[a], hi_all[b] - src_start[a]
            shape = [1] * x.ndim
            shape[dim] = -1
            t = t_all[b].view(shape)
            low = x.index_select(dim, lo)
            x = low.add_(x.index_select(dim, hi).sub_(low).mul_(t))  # a + (b - a) * t, three rounded steps
        return x


    def _axis_on(self, device: torch.device, a: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Axis ``a``'s map (lo, hi, t) on ``device``, copied there once: per box only device
        slicing follows (a copy per box would, on a GPU, wait for all the queued work)."""
        key = (str(device), a)
        if key not in self._on_device:
            m = self.maps[a]
            lo, hi, t = (torch.from_numpy(v).to(device) for v in (m.lo, m.hi, m.t))
            self._on_device[key] = (lo, hi, t)
        return self._on_device[key]


def slabs(box: Region, budget: int, cost: Callable[[slice], int] | None = None) -> list[Region]:
    """``box`` cut along its first axis into slabs of a power of two rows costing at most ``budget``
    voxels each (at least one row); ``cost(rows)``: the voxels such a slab touches (default: its own)."""
    plane = int(np.prod([b.stop - b.start for b in box[1:]]))
    cost = cost or (lambda r: (r.stop - r.start) * plane)
    out, k0, k1 = [], box[0].start, box[0].stop
    while k0 < k1:
        step = 1
        while k0 + step < k1 and cost(slice(k0, min(k1, k0 + 2 * step))) <= budget:
            step *= 2
        out.append((slice(k0, min(k1, k0 + step)), *box[1:]))
        k0 += step
    return out


def slab_budget(device: torch.device) -> int:
    return SLAB_VOXELS.get(device.type, SLAB_VOXELS["default"])


def _local(box: Region, origin: Sequence[int]) -> Region:
    return tuple(slice(b.start - o, b.stop - o) for b, o in zip(box, origin))


def _starts(box: Region) -> tuple[int, ...]:
    return tuple(b.start for b in box)


def resample_image(
    load: Callable[[Region], torch.Tensor],
    fwd: Resampler,
    box: Region,
    device: torch.device,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """The image on ``box`` of the model's grid as a float32 host array, slab by slab.

    ``load(src_box)`` returns the normalised float32 source box on ``device`` (only the rows
    a slab reads are loaded at a time); yields progress per slab, checking ``cancel``.
    """
    out = np.empty([b.stop - b.start for b in box], np.float32)
    parts = slabs(box, slab_budget(device), lambda r: max(_voxels((r, *box[1:])), _voxels(fwd.reads((r, *box[1:])))))
    for n, part in enumerate(parts):
        if cancel is not None:
            cancel.raise_if_cancelled("inference")
        src_box = fwd.reads(part)
        with torch.inference_mode():
            values = fwd(load(src_box), _starts(src_box), part)
            out[_local(part, _starts(box))] = values.cpu().numpy()
        yield Progress(0.0, "resampling the image to the model's spacing", n + 1, len(parts))
    return out


def _voxels(box: Region) -> int:
    return int(np.prod([b.stop - b.start for b in box]))


class BackProjection:
    """Working-grid results brought back to ``region`` of the input grid, slab by slab, on their device.

    ``probs`` ``[C, *work]`` (and ``disagreement`` ``[*work]``) lie at ``origin`` of the model's
    grid; ``back`` resamples that grid to the input grid.
    """

    def __init__(self, back: Resampler, origin: Sequence[int], region: Region, probs: torch.Tensor,
                 disagreement: torch.Tensor | None = None) -> None:
        self.back, self.origin, self.region = back, tuple(int(o) for o in origin), tuple(region)
        self.probs, self.dis = probs, disagreement
        self.shape = tuple(r.stop - r.start for r in self.region)
        self.device = probs.device

    def parts(self) -> list[Region]:
        """The slabs of ``region`` (input grid) processed at a time."""
        c = self.probs.shape[0]
        return slabs(self.region, max(1, slab_budget(self.device) // max(1, c)))

    def values(self, work: torch.Tensor, part: Region) -> torch.Tensor:
        """``work`` (``[..., *work]``) resampled onto input box ``part``."""
        src_box = self.back.reads(part)
        lead = (slice(None),) * (work.ndim - 3)
        return self.back(work[(*lead, *_local(src_box, self.origin))], _starts(src_box), part)

    def finish(self, cancel: CancelToken | None = None) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
        """Labels (uint8) and normalised entropy (float32) on ``region``, one slab at a time."""
        c = self.probs.shape[0]
        labels = np.empty(self.shape, np.uint8 if c <= 256 else np.int32)
        entropy = np.empty(self.shape, np.float32)
        parts = self.parts()
        for n, part in enumerate(parts):
            if cancel is not None:
                cancel.raise_if_cancelled("inference")
            local = _local(part, _starts(self.region))
            with torch.inference_mode():
                lab, ent = labels_and_entropy(self.values(self.probs, part), class_dim=0)
                labels[local], entropy[local] = lab.cpu().numpy(), ent.cpu().numpy()
            del lab, ent
            yield Progress(1.0, "resampling to the input grid", n + 1, len(parts))
        return labels, entropy

    def to_host(self, work: torch.Tensor, dtype: np.dtype, torch_dtype: torch.dtype | None) -> np.ndarray:
        """``work`` resampled onto ``region`` as a host array of ``dtype`` (cast on the device first)."""
        out = np.empty((*work.shape[:-3], *self.shape), dtype)
        lead = (slice(None),) * (work.ndim - 3)
        for part in self.parts():
            with torch.inference_mode():
                v = self.values(work, part)
                if torch_dtype is not None:
                    v = v.to(torch_dtype)
                out[(*lead, *_local(part, _starts(self.region)))] = v.cpu().numpy()
        return out

    def tensor(self) -> torch.Tensor:
        """The float32 probabilities ``[C, *region]`` on the device, built slab by slab (a new
        tensor each call: :meth:`Prediction.probabilities_tensor
        <unet_engine.inference.predict.Prediction.probabilities_tensor>` keeps the one it asks for)."""
        out = torch.empty((self.probs.shape[0], *self.shape), dtype=torch.float32, device=self.device)
        for part in self.parts():
            with torch.inference_mode():
                out[(slice(None), *_local(part, _starts(self.region)))] = self.values(self.probs, part)
        return out
