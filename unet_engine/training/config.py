"""Every fine-tuning hyper-parameter, in one JSON-serialisable dataclass.

The trainer reads nothing else: no constant deep in :mod:`unet_engine.training.fine_tune` changes
what is learned. The config is stored in each registry version (``version.json``) and in
the resumable training state, so a run can be reproduced or continued exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)


@dataclass
class AugmentConfig:
    """Random augmentation applied on the fly, in torch (see :mod:`unet_engine.training.augment`)."""

    p_flip: float = 0.5  # per spatial axis
    flip_axes: list[int] | None = None  # spatial axes (0 = first after channels) to flip; None = all
    p_spatial: float = 0.5  # probability of a rotation + scaling
    rotation_deg: float = 15.0  # uniform in [-r, r] (about each axis in 3D)
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_intensity: float = 0.5  # multiplicative + additive jitter
    intensity_scale: tuple[float, float] = (0.9, 1.1)
    intensity_shift: tuple[float, float] = (-0.1, 0.1)  # in normalised (z-score) units
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    noise_std: float = 0.05

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "AugmentConfig":
        return _from_dict(cls, d or {}, "augment")


@dataclass
class TrainConfig:
    """Fine-tuning settings (all with sensible defaults for a 2D U-Net on MR slices)."""

    # length: the schedule spans max_steps (or epochs * steps_per_epoch); max_minutes only cuts it short
    epochs: int = 10
    steps_per_epoch: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    # optimisation
    batch_size: int | None = None  # None: 16 for 2D models; for 3D the parent's (its card), else 2
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.02  # cosine decays to lr * min_lr_ratio
    grad_clip: float | None = 12.0
    amp: bool = True  # mixed precision on CUDA (float16 with loss scaling)
    # bfloat16 autocast when training on a CPU; None: where the CPU runs it fast (devices.cpu_bf16_is_fast)
    cpu_bf16: bool | None = None
    # loss
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    edit_weight: float = 2.0  # edited voxels weigh 1 + edit_weight in the loss (0 = off)
    # data
    patch_size: list[int] | None = None  # 2D: [H, W]; 3D: [D, H, W]; None: whole slices (2D) / 64^3 (3D)
    replay_ratio: float = 0.5  # share of each batch drawn from cases the parent model already saw
    foreground_fraction: float = 0.5  # share of samples centred on a labelled voxel
    cache_cases: int = 4  # decoded cases kept in memory per stream (new / replay)
    samples_per_case: int = 16  # samples drawn from a case before it leaves the working set
    prefetch_batches: int = 2  # batches prepared ahead in a background thread (0: between steps); same results
    augment: AugmentConfig | None = None  # None: the start model's (its card), else AugmentConfig()
    # validation and early stopping (on the dataset's fixed val split)
    validate_every_epochs: int = 1
    validate_at_start: bool = True
    val_max_cases: int | None = None
    val_batch_size: int = 32
    patience: int = 5  # epochs without improvement of mean val Dice before stopping (0 = never)
    min_delta: float = 1e-3
    # new model when training from scratch (ignored when starting from a version)
    model_spec: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None  # PreprocessConfig dict of a scratch model (None: by modality)
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None  # CPU threads (None: torch's default)
    checkpoint_every_steps: int = 50  # resumable state written every N steps (and at pause/cancel)
    deterministic: bool = True  # cuDNN deterministic algorithms on GPU

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        self.validate()

    def validate(self) -> None:
        """Raise SegLoopError naming the first bad field."""
        def bad(name: str, why: str) -> SegLoopError:
            return SegLoopError(f"training config: {name} {why} (got {getattr(self, name)!r})")

        if self.batch_size is not None and int(self.batch_size) < 1:
            raise bad("batch_size", "must be >= 1")
        for name in ("epochs", "steps_per_epoch", "cache_cases", "samples_per_case", "val_batch_size",
                     "checkpoint_every_steps", "validate_every_epochs"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("max_steps", "must be >= 1")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise bad("max_minutes", "must be > 0")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        for name in ("replay_ratio", "foreground_fraction", "min_lr_ratio"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.patch_size is not None and (len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1):
            raise bad("patch_size", "must be [H, W] or [D, H, W] of positive sizes")
        if self.warmup_steps < 0 or self.patience < 0 or self.prefetch_batches < 0:
            raise SegLoopError("training config: warmup_steps, patience and prefetch_batches must be >= 0")
        if self.preprocessing is not None:
            from unet_engine.model.preprocessing import PreprocessConfig

            if not isinstance(self.preprocessing, dict):
                raise bad("preprocessing", "must be a preprocessing dict (mode, percentiles, ct_window, ...)")
            try:
                PreprocessConfig.from_dict(self.preprocessing)
            except (TypeError, ValueError) as exc:
                raise SegLoopError(f"training config: preprocessing is not valid: {exc}") from None

    @property
    def total_steps(self) -> int:
        """Length of the learning-rate schedule (and the run, unless stopped early)."""
        return int(self.max_steps) if self.max_steps is not None else int(self.epochs) * int(self.steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return json.loads(json.dumps(d))  # tuples -> lists: exactly what JSON round-trips to

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, d, "training config")

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "TrainConfig":
        """Parse JSON text, or read it from a file path."""
        return cls.from_dict(read_json_object(str(text_or_path), "training config"))

    def replace(self, **changes: Any) -> "TrainConfig":
        d = self.to_dict()
        d.update(changes)
        return TrainConfig.from_dict(d)


def read_json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object given as text or as the path of a file holding it; SegLoopError naming ``what``."""
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SegLoopError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SegLoopError(f"{what} must be a JSON object")
    return data


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SegLoopError(f"{what}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = dict(data)
    for name, value in list(kwargs.items()):
        if isinstance(value, list) and "tuple" in str(known[name].type):
            kwargs[name] = tuple(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SegLoopError(f"{what}: {exc}") from None


DEFAULT_BATCH_2D = 16  # slices
DEFAULT_BATCH_3D = 2  # whole-volume patches


def batch_size_for(config: TrainConfig, dims: int, training: dict[str, Any] | None) -> int:
    """The batch size a run uses: ``config.batch_size`` if set; else the batch the start model
    was trained with (its card), else 16 slices (2D) or 2 patches (3D)."""
    if config.batch_size is not None:
        return int(config.batch_size)
    return parent_batch_size(training) or (DEFAULT_BATCH_3D if dims == 3 else DEFAULT_BATCH_2D)


def parent_batch_size(training: dict[str, Any] | None) -> int | None:
    """Batch size a model was trained with (its card's ``training.config``), for fine-tunes of it.

    A fine-tune keeps the sampling its parent was made with: a planned first model's batch of
    a few patches (or a 3D model's few whole-volume patches) is what makes its steps fast; a
    default of 16 whole slices made each fine-tuning step of a planned ACDC model ~12x slower
    (bench/RESULTS.md, "ACDC through the GUI"). None for cards that do not say.
    """
    config = (training or {}).get("config") or {}
    try:
        size = int(config["batch_size"])
    except (KeyError, TypeError, ValueError):
        return None
    return size if size >= 1 else None


def augment_for(config: TrainConfig, training: dict[str, Any] | None) -> AugmentConfig:
    """The augmentation a run uses: ``config.augment`` if set; else the start model's (its card:
    e.g. a plan that turned mirroring off because the labels name a side), else the defaults."""
    if config.augment is not None:
        return config.augment
    parent = ((training or {}).get("config") or {}).get("augment")
    if isinstance(parent, dict):
        try:
            return AugmentConfig.from_dict(parent)
        except SegLoopError as exc:
            log.warning("ignoring the start model's augmentation settings (%s)", exc)
    return AugmentConfig()
