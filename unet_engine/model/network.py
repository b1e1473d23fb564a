"""The U-Net and the :class:`ModelSpec` that describes it.

Classic U-Net (Ronneberger et al. 2015) with the now-usual changes: "same" padding so the
output has the input's size, BatchNorm after every convolution, and an optional bilinear
(trilinear in 3D) upsampling instead of transposed convolutions. Level ``l`` (0..depth)
has ``base_width * 2**l`` feature maps; ``depth`` is the number of 2x poolings, so the
classic network is ``ModelSpec(base_width=64, depth=4)`` (31 M parameters in 2D).

2.5D models are 2D models whose input channels are ``2 * context_slices + 1`` adjacent
slices (centre slice in the middle channel); :mod:`unet_engine.model.preprocessing` builds
those stacks.

Any input size works: the network pads its input (edge replication, centred) to a
multiple of ``2**depth`` and crops the logits back, so a 37x51 slice gives 37x51 logits.
The inference pipeline pads whole volumes once instead, which makes the internal pad a
no-op there.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

UPSAMPLE_MODES = ("transpose", "bilinear")


@dataclass
class ModelSpec:
    """Architecture of a :class:`UNet`; stored in every checkpoint's model card."""

    dims: int = 2
    in_channels: int = 1
    num_classes: int = 3
    base_width: int = 16
    depth: int = 4
    upsample: str = "transpose"  # "transpose" or "bilinear" (trilinear in 3D)
    context_slices: int = 0  # 2.5D: neighbours on each side fed as channels

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` describing the first inconsistent field."""
        if self.dims not in (2, 3):
            raise ValueError(f"ModelSpec.dims must be 2 or 3, got {self.dims}")
        for name in ("in_channels", "num_classes", "base_width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"ModelSpec.num_classes must be >= 2 (background + labels), got {self.num_classes}")
        if not 0 <= self.depth <= 8:
            raise ValueError(f"ModelSpec.depth must be 0..8, got {self.depth}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"ModelSpec.upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.context_slices < 0:
            raise ValueError(f"ModelSpec.context_slices must be >= 0, got {self.context_slices}")
        if self.context_slices and self.dims != 2:
            raise ValueError("ModelSpec.context_slices (2.5D) needs dims=2")
        if self.context_slices and self.in_channels != 2 * self.context_slices + 1:
            raise ValueError(
                f"a 2.5D model with context_slices={self.context_slices} takes "
                f"{2 * self.context_slices + 1} input channels, got in_channels={self.in_channels}"
            )

    @property
    def widths(self) -> list[int]:
        """Feature maps per level, from full resolution (0) to the bottleneck (depth)."""
        return [self.base_width * 2**level for level in range(self.depth + 1)]

    @property
    def is_2_5d(self) -> bool:
        return self.context_slices > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Build from a dict; unknown keys (from a newer SegLoop) are ignored with a warning."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning("ignoring unknown ModelSpec fields %s", unknown)
        kwargs = {k: v for k, v in data.items() if k in known}
        for k in ("dims", "in_channels", "num_classes", "base_width", "depth", "context_slices"):
            if k in kwargs:
                kwargs[k] = int(kwargs[k])
        return cls(**kwargs)


def required_multiple(spec: ModelSpec) -> int:
    """Spatial sizes the network runs on without internal padding are multiples of this."""
    return 2**spec.depth


def _layers(dims: int) -> tuple[type[nn.Conv2d] | type[nn.Conv3d], type[nn.BatchNorm2d] | type[nn.BatchNorm3d],
                                type[nn.MaxPool2d] | type[nn.MaxPool3d],
                                type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]]:
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) x 2."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        conv, bn, _, _ = _layers(dims)
        super().__init__(
            conv(cin, cout, kernel_size=3, padding=1, bias=False),
            bn(cout),
            nn.ReLU(inplace=True),
            conv(cout, cout, kernel_size=3, padding=1, bias=False),
            bn(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """2x upsampling from ``cin`` to ``cout`` feature maps (transposed conv or interpolation + 1x1 conv)."""

    def __init__(self, dims: int, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        conv, _, _, tconv = _layers(dims)
        self.mode = mode
        self.interp = "bilinear" if dims == 2 else "trilinear"
        self.up: nn.Module
        if mode == "transpose":
            self.up = tconv(cin, cout, kernel_size=2, stride=2)
        else:
            self.up = conv(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.up(x)
        x = F.interpolate(x, scale_factor=2.0, mode=self.interp, align_corners=False)
        return self.up(x)


class UNet(nn.Module):
    """2D or 3D U-Net built from a :class:`ModelSpec`; input ``[B, C, (D,) H, W]``, output logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        _, _, pool, _ = _layers(spec.dims)
        w = spec.widths
        self.encoders = nn.ModuleList()
        cin = spec.in_channels
        for level in range(spec.depth + 1):
            self.encoders.append(DoubleConv(spec.dims, cin, w[level]))
            cin = w[level]
        self.pool = pool(kernel_size=2, stride=2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(spec.depth)):
            self.ups.append(Up(spec.dims, w[level + 1], w[level], spec.upsample))
            self.decoders.append(DoubleConv(spec.dims, 2 * w[level], w[level]))
        conv, _, _, _ = _layers(spec.dims)
        self.head = conv(w[0], spec.num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = self.spec.dims
        if x.ndim != nd + 2:
            raise ValueError(f"{nd}D U-Net expects a {nd + 2}D tensor [B, C, ...], got shape {tuple(x.shape)}")
        if x.shape[1] != self.spec.in_channels:
            raise ValueError(f"U-Net expects {self.spec.in_channels} input channels, got {x.shape[1]}")
        m = required_multiple(self.spec)
        sizes = x.shape[2:]
        pads = [(-s) % m for s in sizes]
        if any(pads):
            # F.pad lists pads from the last dimension backwards: (left_W, right_W, left_H, right_H, ...)
            pad_arg: list[int] = []
            for p in reversed(pads):
                pad_arg += [p // 2, p - p // 2]
            x = F.pad(x, pad_arg, mode="replicate")
        skips = []
        for level, enc in enumerate(self.encoders):
            x = enc(x)
            if level < self.spec.depth:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.ups, self.decoders):
            x = up(x)
            x = dec(torch.cat([skips.pop(), x], dim=1))
        x = self.head(x)
        if any(pads):
            crop = [slice(None), slice(None)] + [slice(p // 2, p // 2 + s) for p, s in zip(pads, sizes)]
            x = x[tuple(crop)]
        return x


def build_model(spec: ModelSpec | dict[str, Any]) -> UNet:
    """A freshly initialised :class:`UNet` for ``spec`` (a ModelSpec or its dict)."""
    if isinstance(spec, dict):
        spec = ModelSpec.from_dict(spec)
    return UNet(spec)


def with_more_classes(model: UNet, num_classes: int) -> UNet:
    """A copy of ``model`` predicting ``num_classes`` classes: every layer and the existing
    classes' output weights kept, the new classes' outputs freshly initialised (a label added
    to a project: the network learns it at the next fine-tune, its old labels intact)."""
    old = model.spec.num_classes
    if num_classes < old:
        raise ValueError(f"cannot shrink a {old}-class model to {num_classes} classes")
    if num_classes == old:
        return model
    spec = ModelSpec.from_dict({**model.spec.to_dict(), "num_classes": int(num_classes)})
    new = UNet(spec)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    new.load_state_dict(state, strict=False)
    with torch.no_grad():
        new.head.weight[:old] = model.head.weight
        cast(torch.Tensor, new.head.bias)[:old] = cast(torch.Tensor, model.head.bias)  # the head is built with a bias
    return new


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with each BatchNorm folded into its convolution.

    Same function up to float rounding, one memory pass less per layer. Only for
    inference: the fused copy has a different state dict and must never be saved.
    Modules that are not :class:`DoubleConv` are copied unchanged.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, DoubleConv):
            for conv_i, bn_i in ((0, 1), (3, 4)):
                bn = module[bn_i]
                if isinstance(bn, nn.Identity):
                    continue
                # DoubleConv's layout: a convolution followed by its BatchNorm
                conv = cast("nn.Conv2d | nn.Conv3d", module[conv_i])
                module[conv_i] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, cast("nn.BatchNorm2d | nn.BatchNorm3d", bn))
                module[bn_i] = nn.Identity()
    return fused
