"""A first model's training plan, made from the dataset fingerprint (nnU-Net style).

:func:`make_plan` decides dimensionality (2D / 2.5D / 3D), target spacing, patch, batch,
network depth and width, normalisation, augmentation and the number of steps that fit a
time budget; every decision carries the reason a user reads (:meth:`TrainingPlan.summary_lines`).
:meth:`TrainingPlan.with_changes` is the GUI's "Advanced": the named fields become fixed
and everything that depends on them is planned again. :meth:`TrainingPlan.train_config`
turns the plan into the :class:`~unet_engine.training.config.TrainConfig` that
:func:`unet_engine.training.fine_tune.fine_tune` (``from_version="scratch"``) trains exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from unet_engine.errors import SegLoopError
from unet_engine.planning import cost, rules
from unet_engine.planning.fingerprint import DatasetFingerprint
from unet_engine.training.config import AugmentConfig, TrainConfig

log = logging.getLogger(__name__)

PLAN_VERSION = 1
LR_SCRATCH = 1e-3  # AdamW from scratch (the loop-sim and default-model runs used it)
N_VALIDATIONS = 5  # validations per run when the dataset has a validation split
VAL_SHARE_MAX = 0.15  # of the budget; fewer validation cases beyond that
FIT_SHARE = 0.9  # steps are fitted to this share of the budget; max_minutes (the whole budget) cuts the rest
MIN_STEPS = rules.MIN_STEPS
FEW_STEPS = 500  # fewer gets a warning in the reasons
ROUND_TARGET_S = 100.0  # a fine-tune after each corrected case: about this much training (the wait between cases)
DEFAULT_STEPS = 1000  # when neither minutes nor steps are given
EDITABLE = ("dims", "context_slices", "base_width", "depth", "patch_size", "batch_size", "target_spacing",
            "normalization", "minutes", "max_steps", "lr")


@dataclass
class TrainingPlan:
    """Everything a first training run needs; JSON-able (:meth:`to_dict` / :meth:`from_dict`)."""

    modality: str
    labels: dict[int, str]
    dims: int
    context_slices: int
    base_width: int
    depth: int
    patch_size: list[int]
    batch_size: int
    target_spacing: list[float | None] | None
    normalization: dict[str, Any]  # PreprocessConfig fields except target_spacing
    augment: dict[str, Any]
    lr: float
    max_steps: int
    minutes: float | None  # the time budget (None: planned by steps)
    seconds_per_step: float
    step_time_source: str  # "estimate" or "calibrated"
    steps_per_epoch: int  # steps between validations
    val_max_cases: int | None
    cache_cases: int
    samples_per_case: int
    device: str  # cpu, cuda, cuda:1, mps
    threads: int | None
    memory_bytes: int  # estimated peak of one training step
    parameters: int
    flops_per_s: float  # the device speed the step time was estimated from (calibration measures it)
    finetune_steps: int = 0  # each fine-tune after a corrected case (finetune_config)
    finetune_lr: float = LR_SCRATCH
    reasons: dict[str, str] = field(default_factory=dict)
    user_set: dict[str, Any] = field(default_factory=dict)  # fields fixed by the user ("Advanced")
    fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION

    # ----- derived -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    @property
    def in_channels(self) -> int:
        return 2 * self.context_slices + 1

    def model_spec(self) -> dict[str, Any]:
        """The :class:`~unet_engine.model.network.ModelSpec` dict of the planned network."""
        return {"dims": self.dims, "in_channels": self.in_channels, "num_classes": self.num_classes,
                "base_width": self.base_width, "depth": self.depth, "upsample": "transpose",
                "context_slices": self.context_slices}

    def preprocessing(self) -> dict[str, Any]:
        """The :class:`~unet_engine.model.preprocessing.PreprocessConfig` dict (normalisation + target spacing)."""
        return {**self.normalization, "target_spacing": None if self.target_spacing is None else list(self.target_spacing)}

    @property
    def estimated_minutes(self) -> float:
        return self.max_steps * self.seconds_per_step / 60.0

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig that trains this plan with ``fine_tune(..., from_version="scratch")``.

        ``max_minutes`` is the whole budget, a safety cut: the steps were fitted to
        ``FIT_SHARE`` of it, so the cosine schedule completes unless the machine slows down.
        ``overrides`` (TrainConfig fields) are applied last, e.g. ``seed=1``.
        """
        cfg = TrainConfig(
            max_steps=self.max_steps, steps_per_epoch=max(1, self.steps_per_epoch), max_minutes=self.minutes,
            batch_size=self.batch_size, lr=self.lr, warmup_steps=min(50, max(1, self.max_steps // 20)), patience=0,
            model_spec=self.model_spec(), preprocessing=self.preprocessing(), patch_size=list(self.patch_size),
            augment=AugmentConfig.from_dict(self.augment), cache_cases=self.cache_cases,
            samples_per_case=self.samples_per_case,
            validate_at_start=False, val_max_cases=self.val_max_cases, device=self.device, num_threads=self.threads,
            checkpoint_every_steps=max(50, self.max_steps // 20))
        return cfg.replace(**overrides) if overrides else cfg

    def finetune_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig of a fine-tune of this plan's model after each corrected case
        (``fine_tune(..., from_version=<the active version>)``): ``finetune_steps`` at
        ``finetune_lr``, half of each batch replaying earlier cases."""
        steps = max(1, int(self.finetune_steps))
        cfg = TrainConfig(
            max_steps=steps, steps_per_epoch=steps, batch_size=self.batch_size, lr=self.finetune_lr,
            warmup_steps=min(20, max(1, steps // 10)), patience=0, replay_ratio=0.5, model_spec=self.model_spec(),
            preprocessing=self.preprocessing(), patch_size=list(self.patch_size),
            augment=AugmentConfig.from_dict(self.augment),
            cache_cases=self.cache_cases, samples_per_case=self.samples_per_case, validate_at_start=False,
            val_max_cases=self.val_max_cases, device=self.device, num_threads=self.threads,
            checkpoint_every_steps=max(50, steps // 4))
        return cfg.replace(**overrides) if overrides else cfg

    # ----- the user's changes ------------------------------------------------------------------
    def with_changes(self, **changes: Any) -> "TrainingPlan":
        """A new plan with ``changes`` fixed (names in ``EDITABLE``) and the rest re-planned.

        E.g. ``plan.with_changes(dims=3)`` gives a 3D patch, depth and batch;
        ``plan.with_changes(minutes=30)`` only refits the steps. Nonsense raises SegLoopError.
        """
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise SegLoopError(f"plan: cannot change {', '.join(unknown)}; editable: {', '.join(EDITABLE)}")
        fixed = {**self.user_set, **changes}
        if "minutes" in changes and "max_steps" not in changes:
            fixed.pop("max_steps", None)
        if "max_steps" in changes and "minutes" not in changes:
            fixed.pop("minutes", None)
        fp = DatasetFingerprint.from_dict(self.fingerprint)
        new = make_plan(fp, device=self.device, threads=self.threads, overrides=fixed,
                        flops_per_s=self._calibrated_flops())
        if self.step_time_source == "calibrated" and new.calibration_key() == self.calibration_key():
            new = new._with_step_time(self.seconds_per_step, "calibrated")
        return new

    def calibration_key(self) -> tuple[Any, ...]:
        """What the measured step time depends on."""
        return (self.dims, self.context_slices, self.base_width, self.depth, tuple(self.patch_size), self.batch_size,
                self.device, self.threads)

    def _calibrated_flops(self) -> float | None:
        return float(self.flops_per_s) if self.step_time_source == "calibrated" else None

    def _with_step_time(self, seconds: float, source: str, flops_per_s: float | None = None) -> "TrainingPlan":
        """The same plan with a new step time (and device speed); the steps are refitted to the minutes."""
        d = self.to_dict()
        d["seconds_per_step"], d["step_time_source"] = float(seconds), source
        if flops_per_s:
            d["flops_per_s"] = float(flops_per_s)
        plan = TrainingPlan.from_dict(d)
        fp = DatasetFingerprint.from_dict(self.fingerprint)
        budget = cost.with_flops(cost.device_budget(self.device, self.threads), plan.flops_per_s)
        return _fit_schedule(plan, fp, budget)

    # ----- presentation ------------------------------------------------------------------------
    def summary_lines(self) -> list[str]:
        """What the plan dialog and ``segloop train --project`` print: each choice and why."""
        r = self.reasons
        kind = {2: "2D", 3: "3D"}[self.dims]
        if self.context_slices:
            kind = f"2.5D ({self.context_slices} neighbour slice{'s' if self.context_slices > 1 else ''} each side)"
        bottleneck = " x ".join(str(p // 2**self.depth) for p in self.patch_size)
        mins = f"{self.minutes:g} min" if self.minutes is not None else f"~{self.estimated_minutes:.1f} min"
        chosen = sorted(k for k in self.user_set if k not in ("minutes", "max_steps"))
        user = f"  [set by you: {', '.join(chosen)}]" if chosen else ""
        ts = "none" if self.target_spacing is None else rules._mm(self.target_spacing)
        norm = self.normalization
        norm_s = (f"CT window {norm['ct_window'][0]:.0f}..{norm['ct_window'][1]:.0f} HU" if norm.get("mode") == "ct"
                  else f"z-score over {'nonzero' if norm.get('foreground') == 'nonzero' else 'all'} voxels")
        return [
            f"Model: {kind} U-Net, base width {self.base_width}, depth {self.depth} (bottleneck {bottleneck}), "
            f"{self.parameters / 1e6:.2f} M parameters{user}",
            f"  why: {r.get('dims', '')}",
            f"  network: {r.get('network', '')}",
            f"Target spacing: {ts}  ({r.get('target_spacing', '')})",
            f"Patch: {rules._vox(self.patch_size)}, batch {self.batch_size}  ({r.get('patch_size', '')}; "
            f"{r.get('batch_size', '')})",
            f"Normalisation: {norm_s}  ({r.get('normalization', '')})",
            f"Augmentation: {r.get('augment', '')}",
            f"Training: {mins} on {self.device}{'' if not self.threads else f' ({self.threads} thread(s))'}: "
            f"{self.max_steps} steps at {self.seconds_per_step:.2f} s/step ({self.step_time_source}), "
            f"AdamW lr {self.lr:g} with warm-up and cosine decay",
            f"  why: {r.get('schedule', '')}",
            f"Each corrected case: {self.finetune_steps} fine-tuning steps at lr {self.finetune_lr:g}  "
            f"({r.get('finetune', '')})",
        ]

    # ----- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainingPlan":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SegLoopError(f"training plan: unknown field(s) {', '.join(unknown)}")
        if int(d.get("version", PLAN_VERSION)) > PLAN_VERSION:
            raise SegLoopError(f"training plan version {d['version']} is newer than this SegLoop ({PLAN_VERSION})")
        try:
            kw = dict(d)
            kw["labels"] = {int(k): str(v) for k, v in d["labels"].items()}
            plan = cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise SegLoopError(f"training plan: malformed ({exc})") from None
        plan.validate()
        return plan

    def validate(self) -> None:
        """Raise SegLoopError naming the first field that makes no sense."""
        rules.check_fields(self.dims, self.context_slices, self.base_width, self.depth, self.patch_size, self.batch_size,
                      self.target_spacing, self.lr, self.max_steps)


def make_plan(fp: DatasetFingerprint, *, device: str = "auto", minutes: float | None = None, steps: int | None = None,
              threads: int | None = None, overrides: dict[str, Any] | None = None,
              flops_per_s: float | None = None) -> TrainingPlan:
    """Plan a first model for the fingerprinted dataset on ``device`` within ``minutes`` (or ``steps``).

    ``overrides`` fixes fields (names in ``EDITABLE``); ``flops_per_s`` replaces the device's
    estimated speed (a calibration's measurement). The step time is an estimate until
    :func:`unet_engine.planning.calibrate.calibrate_plan` measures it.
    """
    ov = dict(overrides or {})
    unknown = sorted(set(ov) - set(EDITABLE))
    if unknown:
        raise SegLoopError(f"plan: cannot set {', '.join(unknown)}; editable: {', '.join(EDITABLE)}")
    if minutes is not None and "minutes" not in ov:
        ov["minutes"] = minutes
    if steps is not None and "max_steps" not in ov:
        ov["max_steps"] = steps
    for name in ("dims", "context_slices", "base_width", "depth", "batch_size", "max_steps"):
        ov[name] = rules.as_int(ov, name) if name in ov else None
    ov = {k: v for k, v in ov.items() if v is not None}
    rules.check_overrides(ov)
    if "minutes" in ov and not (isinstance(ov["minutes"], (int, float)) and float(ov["minutes"]) > 0):
        raise SegLoopError(f"plan: minutes must be > 0 (got {ov['minutes']!r})")
    if "patch_size" in ov:
        ps = ov["patch_size"]
        if not isinstance(ps, (list, tuple)) or not all(isinstance(p, (int, float)) and int(p) == p and p >= 1 for p in ps):
            raise SegLoopError(f"plan: patch_size must be a list of positive integers (got {ps!r})")
        ov["patch_size"] = [int(p) for p in ps]
    budget = cost.device_budget(device, threads)
    if flops_per_s:
        budget = cost.with_flops(budget, flops_per_s)
    reasons: dict[str, str] = {}
    width = ov.get("base_width") or rules.BASE_WIDTH["gpu" if budget.is_gpu else "cpu"]
    reasons["network"] = ("base width set by you" if "base_width" in ov else
                          f"base width {width}: "
                          + ("nnU-Net's" if budget.is_gpu else "a quarter of the cost of nnU-Net's 32 on a CPU"))
    ratio, med = rules.anisotropy(fp), fp.median_spacing
    ax2d = rules.slice_axis(fp)
    ncls = max(fp.labels) + 1

    def layout(dims: int, context: int) -> tuple[list[float | None], str, list[int], dict[str, Any]]:
        if "target_spacing" in ov:
            ts = ov["target_spacing"]
            ts_why = "set by you"
        else:
            ts, ts_why = rules.choose_target_spacing(fp, dims)
        if ts is not None and (len(ts) != 3 or any(s is not None and not float(s) > 0 for s in ts)):
            raise SegLoopError(f"plan: target_spacing must be 3 positive spacings in mm (got {ts!r})")
        shape = list(fp.median_shape_at(None if ts is None else tuple(ts)))
        full = [n for a, n in enumerate(shape) if a != ax2d] if dims == 2 else shape
        ext = fp.fg_extent_at(None if ts is None else tuple(ts))
        obj = None if ext is None else ([n for a, n in enumerate(ext) if a != ax2d] if dims == 2 else list(ext))
        if "patch_size" in ov and len(ov["patch_size"]) != dims:
            raise SegLoopError(f"plan: patch_size {ov['patch_size']} has {len(ov['patch_size'])} sizes but the model "
                               f"is {dims}D")
        fit = rules.fit_layout(dims, full, budget, 2 * context + 1, ncls, width, ov, obj)
        fit["object"] = obj
        return ts, ts_why, shape, fit

    # dimensionality
    iso_why = f"median spacing {rules._mm(med)} (k, j, i), anisotropy {ratio:.1f}x"
    if "dims" in ov:
        dims = ov["dims"]
        reasons["dims"] = f"{dims}D set by you; {iso_why}"
    elif "patch_size" in ov and len(ov["patch_size"]) in (2, 3):
        dims = len(ov["patch_size"])
        reasons["dims"] = f"{dims}D: the patch set by you has {dims} sizes; {iso_why}"
    elif ratio >= rules.ANISOTROPY_2D:
        dims = 2
        reasons["dims"] = (f"{iso_why} >= {rules.ANISOTROPY_2D:g}: thick slices, so a 2D network in-plane, "
                           f"slicing along axis {'kji'[ax2d]}")
    else:
        ts3, _, shape3, fit3 = layout(3, 0)
        coverage = math.prod(min(p, n) for p, n in zip(fit3["patch"], shape3)) / max(1, math.prod(shape3))
        if budget.is_gpu or coverage >= rules.CPU_3D_MIN_COVERAGE:
            dims = 3
            reasons["dims"] = (f"{iso_why} < {rules.ANISOTROPY_2D:g}: near-isotropic, so 3D; a patch covers "
                               f"{100 * min(1.0, coverage):.0f}% of the median volume")
        else:
            dims = 2
            reasons["dims"] = (f"{iso_why}: near-isotropic, but on {budget.name} a 3D patch would cover only "
                               f"{100 * coverage:.0f}% of the median volume {rules._vox(shape3)}: 2D")
    slices = fp.median_shape[ax2d]
    if "context_slices" in ov:
        context = ov["context_slices"]
    elif dims == 2 and slices >= rules.CONTEXT_MIN_SLICES:
        context = 1
        reasons["dims"] += f"; 2.5D: one neighbour slice each side as context (median {slices} slices)"
    else:
        context = 0
    if dims == 3 and context:
        raise SegLoopError(f"plan: context_slices (2.5D) needs a 2D model (got context_slices={context} with dims=3)")
    ts, reasons["target_spacing"], shape, fit = layout(dims, context)
    depth, patch, batch = fit["depth"], fit["patch"], fit["batch"]
    full = [n for a, n in enumerate(shape) if a != ax2d] if dims == 2 else shape
    if "patch_size" in ov:
        reasons["patch_size"] = "patch set by you"
    else:
        what = "slice" if dims == 2 else "volume"
        if fit["by_object"]:
            start = (f"the labelled structure's extent {rules._vox(fit['object'])} (90th percentile) x "
                     f"{rules.OBJECT_CONTEXT:g} for context, less than the median {what} {rules._vox(full)}: on a "
                     "CPU background voxels cost time and teach little")
        else:
            start = f"the whole median {what} {rules._vox(full)} at the target spacing"
        reasons["patch_size"] = (f"{start}, rounded to multiples of {fit['multiple']}"
                                 + (f", shrunk to fit {budget.name}" if fit["shrunk"] else ""))
    reasons["network"] += (f"; depth {depth} set by you" if "depth" in ov else
                           f"; depth {depth}: pool while the smallest patch edge stays >= {rules.MIN_BOTTLENECK_EDGE} voxels")
    if fit["memory"] > budget.memory_bytes:
        raise SegLoopError(f"plan: a step with patch {rules._vox(patch)} and batch {batch} needs about "
                           f"{fit['memory'] / 2**30:.1f} GB, more than the {budget.memory_bytes / 2**30:.1f} GB "
                           f"available on {budget.name}; choose a smaller patch, batch or width")
    reasons["batch_size"] = ("batch set by you" if "batch_size" in ov else
                             f"batch {batch}: as many samples as fit {budget.name}'s memory and "
                             f"~{budget.step_target_s:g} s per step (min {rules.MIN_BATCH}, max {rules.MAX_BATCH[dims]})")
    normalization, reasons["normalization"] = rules.choose_normalization(fp, ov.get("normalization"))
    augment, reasons["augment"] = rules.choose_augment(fp, dims, ax2d)
    lr = float(ov.get("lr", LR_SCRATCH))
    reasons["lr"] = "set by you" if "lr" in ov else "AdamW 1e-3, the rate SegLoop's from-scratch runs use"
    per_case_bytes = math.prod(shape) * 6  # float32 image + label + edits
    n_train = max(1, len(fp.cases) - fp.n_val)
    cache = int(max(1, min(n_train, (budget.memory_bytes // 2) // max(1, per_case_bytes))))
    samples_per_case = max(16, shape[ax2d]) if dims == 2 else 16
    rules.check_fields(dims, context, width, depth, patch, batch, ts, lr, ov.get("max_steps", MIN_STEPS))
    plan = TrainingPlan(
        modality=fp.modality, labels=dict(fp.labels), dims=dims, context_slices=context, base_width=width, depth=depth,
        patch_size=patch, batch_size=batch, target_spacing=None if ts is None else list(ts),
        normalization=normalization, augment=augment, lr=lr, max_steps=int(ov.get("max_steps", DEFAULT_STEPS)),
        minutes=float(ov["minutes"]) if "minutes" in ov else None, seconds_per_step=fit["seconds"],
        step_time_source="estimate", steps_per_epoch=1, val_max_cases=None, cache_cases=cache,
        samples_per_case=samples_per_case, device=str(cost.choose_device(device)) if device != "auto" else budget.kind,
        threads=budget.threads or None, memory_bytes=int(fit["memory"]),
        parameters=cost.parameter_count(dims, 2 * context + 1, ncls, width, depth), reasons=reasons,
        flops_per_s=float(budget.flops_per_s), user_set={k: v for k, v in ov.items()}, fingerprint=fp.to_dict())
    return _fit_schedule(plan, fp, budget)


def _fit_schedule(plan: TrainingPlan, fp: DatasetFingerprint, budget: cost.DeviceBudget) -> TrainingPlan:
    """Steps (or minutes), validation cadence and validation cases for the plan's time budget."""
    shape = list(fp.median_shape_at(None if plan.target_spacing is None else tuple(plan.target_spacing)))
    if plan.dims == 2:
        ax = rules.slice_axis(fp)
        shape = [shape[ax]] + [n for a, n in enumerate(shape) if a != ax]
    infer_s = cost.inference_seconds(budget, plan.dims, plan.in_channels, plan.num_classes, plan.base_width,
                                     plan.depth, tuple(shape))
    n_val = fp.n_val
    validations = N_VALIDATIONS if n_val else 0
    startup_s = 2.0 + 0.05 * len(fp.cases)
    step_s = max(1e-4, float(plan.seconds_per_step))
    val_cases = n_val
    if plan.minutes is not None:
        budget_s = plan.minutes * 60.0
        if validations and val_cases * infer_s * validations > VAL_SHARE_MAX * budget_s:
            val_cases = max(1, int(VAL_SHARE_MAX * budget_s / (infer_s * validations)))
        usable = FIT_SHARE * budget_s - startup_s - val_cases * infer_s * validations
        steps = int(usable // step_s)
        if steps < MIN_STEPS:
            need = (MIN_STEPS * step_s + startup_s + val_cases * infer_s * validations) / FIT_SHARE / 60.0
            raise SegLoopError(f"plan: {plan.minutes:g} min allow only {max(0, steps)} training steps of "
                               f"{step_s:.2f} s on {budget.name}; give at least {math.ceil(need)} minutes")
        plan.max_steps = steps
        why = (f"{steps} steps of ~{step_s:.2f} s fill {100 * FIT_SHARE:.0f}% of {plan.minutes:g} min "
               f"after {startup_s:.0f} s start-up and {validations} validations on {val_cases} case(s); "
               f"the rest is a safety margin (the run stops at {plan.minutes:g} min regardless)")
    else:
        why = (f"{plan.max_steps} steps set by step count: about "
               f"{(plan.max_steps * step_s + startup_s + val_cases * infer_s * validations) / 60:.1f} min")
    if plan.max_steps < FEW_STEPS:
        why += f"; only {plan.max_steps} steps: expect a rough first model (more minutes help)"
    plan.finetune_steps = max(MIN_STEPS, int(ROUND_TARGET_S // step_s))
    plan.finetune_lr = plan.lr
    plan.reasons["finetune"] = (
        f"~{ROUND_TARGET_S:.0f} s of training per corrected case; a model trained from scratch on a few cases is "
        "far from converged, so its fine-tunes keep the from-scratch rate (ACDC loop-sim, bench/RESULTS.md: "
        "more steps at 1e-3 beat 100 steps at 3e-4)")
    plan.steps_per_epoch = max(1, math.ceil(plan.max_steps / validations)) if validations else plan.max_steps
    plan.val_max_cases = val_cases if validations and val_cases < n_val else None
    plan.reasons["schedule"] = why
    return plan
