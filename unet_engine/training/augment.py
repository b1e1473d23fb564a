"""Data augmentation in plain torch (no torchvision), on whatever device the batch is on.

One random affine per sample (flips, rotation, isotropic scaling) is applied with a
single ``affine_grid`` + ``grid_sample``: bilinear for the image, nearest for the label
and the loss-weight map, so label values stay exact integers. Rotations are built in
voxel space (``D^-1 R D`` with ``D`` the half-sizes), so they stay rigid on non-square
patches. Then, per sample: intensity scale and shift, gamma on the sample's own range,
Gaussian noise.

All random numbers come from the ``torch.Generator`` passed in (a CPU generator), so a
seeded run augments identically, on CPU or GPU, and resumes exactly when the
generator's state is restored. :meth:`Augmenter.draw` makes a batch's parameters (and its
noise) on the host, where the trainer's prefetch thread makes the batch, so a GPU step
only copies them without waiting; :meth:`Augmenter.apply` does the work on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unet_engine.training.config import AugmentConfig


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _bernoulli(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) < p


def _rotation_2d(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _rotation_3d(ax: torch.Tensor, ay: torch.Tensor, az: torch.Tensor) -> torch.Tensor:
    n = ax.shape[0]
    one, zero = torch.ones(n, dtype=ax.dtype), torch.zeros(n, dtype=ax.dtype)

    def m(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = m([[one, zero, zero], [zero, torch.cos(ax), -torch.sin(ax)], [zero, torch.sin(ax), torch.cos(ax)]])
    ry = m([[torch.cos(ay), zero, torch.sin(ay)], [zero, one, zero], [-torch.sin(ay), zero, torch.cos(ay)]])
    rz = m([[torch.cos(az), -torch.sin(az), zero], [torch.sin(az), torch.cos(az), zero], [zero, zero, one]])
    return rz @ ry @ rx


class Augmenter:
    """Callable ``(image, label, weight) -> (image, label, weight)`` for ``dims``-D batches.

    ``image`` is ``[B, C, *S]`` float, ``label`` ``[B, *S]`` integer, ``weight`` ``[B, *S]``
    float or None. Voxels pulled in from outside the patch get image 0, label 0 and
    weight 0 (they are ignored by the loss).
    """

    def __init__(self, config: AugmentConfig, dims: int) -> None:
        self.cfg = config
        self.dims = dims

    def _affine(self, b: int, sizes: list[int], gen: torch.Generator) -> tuple[torch.Tensor, bool]:
        """Per-sample matrices ``[B, d, d+1]`` in grid_sample's (x, y[, z]) order."""
        cfg, d = self.cfg, self.dims
        xyz_sizes = torch.tensor(list(reversed(sizes)), dtype=torch.float64)  # x = last axis
        flip_axes = range(d) if cfg.flip_axes is None else cfg.flip_axes
        signs = torch.ones(b, d, dtype=torch.float64)
        for ax in flip_axes:  # spatial axis ax (0 = first) is grid coordinate d-1-ax
            f = _bernoulli(b, cfg.p_flip, gen)
            signs[f, d - 1 - int(ax)] = -1.0
        spatial = _bernoulli(b, cfg.p_spatial, gen)
        rad = math.radians(cfg.rotation_deg)
        if d == 2:
            rot = _rotation_2d(_uniform(b, -rad, rad, gen))
        else:
            rot = _rotation_3d(_uniform(b, -rad, rad, gen), _uniform(b, -rad, rad, gen), _uniform(b, -rad, rad, gen))
        scale = _uniform(b, cfg.scale_range[0], cfg.scale_range[1], gen)
        eye = torch.eye(d, dtype=torch.float64).expand(b, d, d)
        rot = torch.where(spatial[:, None, None], rot, eye)
        scale = torch.where(spatial, scale, torch.ones_like(scale))
        half = torch.diag(xyz_sizes / 2)
        half_inv = torch.diag(2 / xyz_sizes)
        m = half_inv @ rot @ half / scale[:, None, None]  # output -> input, voxel-rigid
        m = m @ torch.diag_embed(signs)
        theta = torch.cat([m, torch.zeros(b, d, 1, dtype=torch.float64)], dim=2)
        changed = bool(spatial.any()) or bool((signs < 0).any())
        return theta, changed

    def draw(self, shape: tuple[int, ...], gen: torch.Generator) -> AugmentParams:
        """The random parameters for a batch of ``shape`` ``[B, C, *S]``, on the host (where the
        batch is made, ahead of the step), float32 as :meth:`apply` uses them."""
        cfg = self.cfg
        b = shape[0]
        theta, changed = self._affine(b, list(shape[2:]), gen)
        # intensity parameters are drawn every call (fixed consumption of the generator)
        do_int = _bernoulli(b, cfg.p_intensity, gen)
        mult = torch.where(do_int, _uniform(b, *cfg.intensity_scale, gen), torch.ones(b, dtype=torch.float64))
        add = torch.where(do_int, _uniform(b, *cfg.intensity_shift, gen), torch.zeros(b, dtype=torch.float64))
        do_gamma = _bernoulli(b, cfg.p_gamma, gen)
        gamma = torch.where(do_gamma, _uniform(b, *cfg.gamma_range, gen), torch.ones(b, dtype=torch.float64))
        do_noise = _bernoulli(b, cfg.p_noise, gen)
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        noise = None
        if bool(do_noise.any()) and cfg.noise_std > 0:
            ng = torch.Generator(device="cpu")
            ng.manual_seed(noise_seed)
            noise = torch.randn(shape, generator=ng, dtype=torch.float32)
        f32 = torch.float32
        return AugmentParams(theta.to(f32) if changed else None, gamma.to(f32) if bool(do_gamma.any()) else None,
                             mult.to(f32), add.to(f32), noise, do_noise.to(f32))

    def apply(self, image: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, params: AugmentParams
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augment a batch on its device with ``params`` (from :meth:`draw`, moved there by
        :meth:`AugmentParams.to`)."""
        b = image.shape[0]
        dev = image.device
        p = params.to(dev)
        if p.theta is not None:
            grid = F.affine_grid(p.theta, list(image.shape), align_corners=False)
            image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            lab = F.grid_sample(label[:, None].to(torch.float32), grid, mode="nearest", padding_mode="zeros",
                                align_corners=False)
            label = lab[:, 0].round().to(label.dtype)
            w = weight if weight is not None else torch.ones(label.shape, device=dev, dtype=torch.float32)
            w = F.grid_sample(w[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
            weight = w
        shape = (b,) + (1,) * (image.ndim - 1)
        if p.gamma is not None:
            flat = image.reshape(b, -1)
            lo = flat.min(dim=1).values.reshape(shape)
            hi = flat.max(dim=1).values.reshape(shape)
            span = (hi - lo).clamp_min(1e-6)
            image = ((image - lo) / span).clamp(0, 1).pow(p.gamma.reshape(shape)) * span + lo
        image = image * p.mult.reshape(shape) + p.add.reshape(shape)
        if p.noise is not None:
            image = image + p.noise * (self.cfg.noise_std * p.noise_on.reshape(shape))
        return image, label, weight

    def __call__(self, image: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`draw` then :meth:`apply`."""
        return self.apply(image, label, weight, self.draw(tuple(image.shape), gen))


@dataclass(frozen=True)
class AugmentParams:
    """One batch's augmentation, float32 tensors: affine matrices (None: no sample moves),
    gamma per sample (None: none), intensity scale and shift, noise (None: none) and which
    samples get it."""

    theta: torch.Tensor | None
    gamma: torch.Tensor | None
    mult: torch.Tensor
    add: torch.Tensor
    noise: torch.Tensor | None
    noise_on: torch.Tensor

    def to(self, device: torch.device) -> AugmentParams:
        """On ``device``; from pinned memory without waiting (see :meth:`pinned`)."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=t.is_pinned())

        return AugmentParams(None if self.theta is None else move(self.theta),
                             None if self.gamma is None else move(self.gamma), move(self.mult), move(self.add),
                             None if self.noise is None else move(self.noise), move(self.noise_on))

    def pinned(self) -> AugmentParams:
        """In page-locked memory, so the copy to a GPU overlaps the work queued there."""
        def pin(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.pin_memory()

        return AugmentParams(pin(self.theta), pin(self.gamma), self.mult.pin_memory(), self.add.pin_memory(),
                             pin(self.noise), self.noise_on.pin_memory())
