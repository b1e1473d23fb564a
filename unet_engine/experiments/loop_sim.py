"""Simulated human-in-the-loop learning curve (``segloop loop-sim``).

The clinical loop SegLoop supports, replayed with ground truth standing in for the
radiologist: a model trained on ``initial`` cases meets a stream of ``rounds`` new cases.
Each round it

1. predicts the new case and counts the voxels the reviewer would have to correct
   (prediction != reference, in total and per label),
2. adds the corrected case (the reference label, with ``edited`` = the differing voxels)
   to a :class:`~unet_engine.data.dataset.RetrainingDataset`,
3. trains for a fixed budget of ``steps_per_round`` optimisation steps with the real
   trainer (:func:`unet_engine.training.fine_tune.fine_tune`, a temporary registry per mode),
4. scores the new model on a fixed held-out set (mean Dice per label).

Modes: ``finetune`` (from the previous round's model, batches mix the new case with
replayed earlier cases), ``finetune-noreplay`` (new case only) and ``scratch`` (a new
network trained on all cases so far with the same per-round budget). A reference model
(by default the bundled default model, trained on the full training split) is scored on
the same held-out set. The held-out cases are taken from the reference model's own
validation split when its card lists one, so the reference never saw them either.

``plan="auto"`` takes the network, preprocessing, patch, batch and augmentation from a
:mod:`unet_engine.planning` plan of the starting cases' fingerprint (a new task's first
model) instead of the reference model; ``planned`` (a saved ``TrainingPlan`` dict, e.g. a
project's) is used as it is. ``group_pattern`` (a regex, e.g. ``patient\\d+``) keeps the
cases of one group (both frames of one patient) on one side of the held-out split.

Held-out Dice: a label absent from both the prediction and the reference of a case is
n/a for that case (not 1.0) and left out of the means.

Everything is seeded: the case order, the initial network, every fine-tune (seed +
round); on CPU two runs with the same arguments give the same numbers (times aside).
Reporting (CSV, PNG, summary) lives in :mod:`unet_engine.experiments.loop_sim_report`.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from unet_engine.data.dataset import RetrainingDataset, case_id_from_name
from unet_engine.errors import SegLoopError
from unet_engine.inference.predict import predict_volume
from unet_engine.metrics import dice_or_none, mean_defined, surface_to_redraw, voxels_beyond_tolerance
from unet_engine.progress import run_generator
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.config import AugmentConfig, TrainConfig
from unet_engine.training.fine_tune import fine_tune
from unet_engine.volume import Volume

log = logging.getLogger(__name__)

MODES = ("finetune", "finetune-noreplay", "scratch")
SURFACE_TOLERANCE_MM = 1.0  # boundary disagreement a reader leaves alone (metrics.surface_to_redraw, voxels_beyond_tolerance)
DEFAULT_SPEC: dict[str, Any] = {"dims": 2, "in_channels": 1, "base_width": 16, "depth": 4}


@dataclass
class LoopSimConfig:
    """Everything that decides a simulation's numbers (stored in ``summary.json``)."""

    data: str  # MSD task folder (imagesTr + labelsTr) or a SegLoop retraining dataset folder
    labels: dict[int, str]
    modes: list[str] = field(default_factory=lambda: ["finetune"])
    initial: int = 5
    rounds: int = 30
    holdout: int = 20
    initial_steps: int = 300
    steps_per_round: int | None = 60  # None: the plan's finetune_steps (with a plan)
    batch_size: int = 16
    lr_initial: float = 1e-3
    lr_round: float | None = 3e-4  # None: the plan's finetune_lr (with a plan)
    replay_ratio: float = 0.5
    model_spec: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPEC))
    augment: dict[str, Any] = field(default_factory=lambda: {"flip_axes": [1]})
    patch_size: list[int] | None = None  # training patch (3D: [D, H, W]); None = the trainer's default
    reference: str | None = None  # checkpoint folder scored on the held-out set; None = none
    holdout_ids: list[str] | None = None  # explicit held-out cases (else from the reference's val split)
    seed: int = 0
    threads: int = 1
    preprocessing: dict[str, Any] | None = None  # PreprocessConfig of new networks (None: by modality)
    cache_cases: int = 4
    samples_per_case: int = 16
    modality: str | None = None  # CT, MR, US or other (planning and the dataset's modality)
    plan: str | None = None  # "auto": plan the network from the starting cases' fingerprint
    plan_overrides: dict[str, Any] = field(default_factory=dict)  # fields fixed in the auto plan
    planned: dict[str, Any] | None = None  # the TrainingPlan used (given, or filled in by plan="auto")
    plan_summary: list[str] = field(default_factory=list)
    group_pattern: str | None = None  # regex: cases sharing its match stay on one side of the held-out split

    def validate(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise SegLoopError(f"loop-sim: unknown mode(s) {', '.join(bad)}; known: {', '.join(MODES)}")
        planned = self.plan == "auto" or self.planned is not None
        for name in ("steps_per_round", "lr_round"):
            if getattr(self, name) is None and not planned:
                raise SegLoopError(f"loop-sim: --{name.replace('_', '-')} is needed without a training plan")
        for name in ("initial", "rounds", "holdout", "initial_steps", "steps_per_round", "batch_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise SegLoopError(f"loop-sim: --{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.plan not in (None, "auto"):
            raise SegLoopError(f"loop-sim: --plan must be 'auto' or absent (got {self.plan!r})")
        if self.group_pattern:
            try:
                re.compile(self.group_pattern)
            except re.error as exc:
                raise SegLoopError(f"loop-sim: --group-pattern {self.group_pattern!r} is not a regular expression "
                                   f"({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        return d


@dataclass
class Case:
    id: str
    image: Path
    label: Path


@dataclass
class RoundRecord:
    """One CSV row (round 0 = the initial model, before any corrected case)."""

    mode: str
    round: int
    corrected_cases: int  # cases the model has been trained on after this round
    case_id: str = ""
    voxels_to_correct: int | None = None
    per_label_to_correct: dict[str, int] = field(default_factory=dict)
    case_dice: dict[str, float] = field(default_factory=dict)
    holdout_dice: dict[str, float] = field(default_factory=dict)
    holdout_mean_dice: float = float("nan")
    predict_s: float = 0.0
    train_s: float = 0.0
    round_s: float = 0.0  # predict + add case + fine-tune (what the user waits for)
    eval_s: float = 0.0
    steps: int = 0
    version: str = ""
    holdout_voxels_to_correct: float = float("nan")  # mean per held-out case: same cases every round
    surface_to_redraw: int | None = None  # outline voxels beyond SURFACE_TOLERANCE_MM on the new case
    holdout_surface_to_redraw: float = float("nan")  # the same, mean per held-out case
    voxels_beyond_tolerance: int | None = None  # wrong voxels beyond SURFACE_TOLERANCE_MM of their label, new case
    holdout_voxels_beyond_tolerance: float = float("nan")  # the same, mean per held-out case


class HoldoutScore(NamedTuple):
    """A model on the held-out set: mean Dice per label, their mean, and per case the mean voxels
    to correct, outline voxels to redraw and wrong voxels beyond the boundary tolerance."""

    per_label: dict[str, float]
    mean: float
    voxels_to_correct: float
    surface_to_redraw: float
    voxels_beyond_tolerance: float = float("nan")


# ----- cases ------------------------------------------------------------------------------------


def list_cases(data: str | Path) -> list[Case]:
    """Cases of an MSD task folder or of a retraining dataset, sorted by id."""
    folder = Path(data)
    if (folder / "dataset.json").is_file() and not (folder / "imagesTr").is_dir():
        raise SegLoopError("loop-sim: not a dataset folder (needs imagesTr/ and labelsTr/)", folder)
    if (folder / "dataset.json").is_file():
        try:
            ds = RetrainingDataset(folder)
            return sorted((Case(c.id, ds.image_path(c), ds.label_path(c)) for c in ds.cases()), key=lambda c: c.id)
        except SegLoopError:
            pass  # an MSD dataset.json, not ours: list the files
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise SegLoopError("loop-sim: no imagesTr/ and labelsTr/ here (an MSD task folder is expected)", folder)
    out = []
    for p in sorted(images.iterdir()):
        if p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith(".") and (labels / p.name).is_file():
            out.append(Case(case_id_from_name(p.name), p, labels / p.name))
    if not out:
        raise SegLoopError("loop-sim: no labelled cases found", folder)
    return out


def reference_val_ids(reference: str | Path | None) -> list[str]:
    """Validation-split case ids recorded in a checkpoint's card (``training.dataset.cases``)."""
    if not reference:
        return []
    from unet_engine.model.checkpoint import load_card

    if not (Path(reference) / "card.json").is_file():
        return []
    card = load_card(reference)
    cases = ((card.training or {}).get("dataset") or {}).get("cases") or []
    return [str(c["id"]) for c in cases if isinstance(c, dict) and c.get("split") == "val" and c.get("id")]


def group_of(case_id: str, pattern: str | None) -> str:
    """The group a case belongs to: the first match of ``pattern`` in its id (itself if none)."""
    if not pattern:
        return case_id
    m = re.search(pattern, case_id)
    return m.group(0) if m else case_id


def split_cases(cases: list[Case], cfg: LoopSimConfig) -> tuple[list[Case], list[Case], list[Case]]:
    """(initial, stream, holdout): disjoint, seeded; held-out from the reference's val split if known.

    With ``cfg.group_pattern`` the held-out set is made of whole groups (drawn in a seeded
    order until it has ``cfg.holdout`` cases), and no case of a held-out group is trained on.
    """
    rng = np.random.default_rng(cfg.seed)
    by_id = {c.id: c for c in cases}
    if cfg.holdout_ids is not None:
        # an explicit held-out set (``--holdout-from``) is honoured fully or refused: never
        # silently replaced by other cases while the summary names the requested ones
        wanted = list(dict.fromkeys(str(i) for i in cfg.holdout_ids))
        if not wanted:
            raise SegLoopError("loop-sim: the requested held-out set is empty (the dataset given for the "
                               "held-out cases has no validation cases)")
        missing = [i for i in wanted if i not in by_id]
        if missing:
            shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
            raise SegLoopError(f"loop-sim: {len(missing)} of the {len(wanted)} requested held-out case(s) are not "
                               f"in the data: {shown}")
    else:
        wanted = reference_val_ids(cfg.reference)
        absent = [i for i in wanted if i not in by_id]
        if absent:
            log.warning("%d of the reference's %d validation case(s) are not in the data (%s); %s", len(absent),
                        len(wanted), ", ".join(absent[:10]) + (", ..." if len(absent) > 10 else ""),
                        "using the others" if len(absent) < len(wanted) else "drawing held-out cases from the data")
    pool = [i for i in wanted if i in by_id]
    if pool:
        pool = [pool[i] for i in rng.permutation(len(pool))]
        if len(pool) < cfg.holdout:
            log.warning("only %d reference validation cases; the held-out set is smaller than asked", len(pool))
        hold_ids = pool[: cfg.holdout]
    elif cfg.group_pattern:
        groups = sorted({group_of(c.id, cfg.group_pattern) for c in cases})
        hold_ids = []
        for g in (groups[i] for i in rng.permutation(len(groups))):
            if len(hold_ids) >= cfg.holdout:
                break
            hold_ids += [c.id for c in cases if group_of(c.id, cfg.group_pattern) == g]
    else:
        hold_ids = [cases[i].id for i in rng.permutation(len(cases))[: cfg.holdout]]
    held_groups = {group_of(i, cfg.group_pattern) for i in hold_ids}
    rest = [c for c in cases if c.id not in set(hold_ids)]
    if cfg.group_pattern:
        dropped = [c.id for c in rest if group_of(c.id, cfg.group_pattern) in held_groups]
        if dropped:
            log.info("not training on %d case(s) of held-out groups: %s", len(dropped), ", ".join(dropped))
        rest = [c for c in rest if group_of(c.id, cfg.group_pattern) not in held_groups]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    need = cfg.initial + cfg.rounds
    if len(rest) < need:
        raise SegLoopError(f"loop-sim: {len(rest)} cases outside the held-out set, but --initial + --rounds = {need}")
    return rest[: cfg.initial], rest[cfg.initial : need], [by_id[i] for i in hold_ids]


def _read(case: Case) -> tuple[Volume, np.ndarray]:
    from unet_engine.io.volume_io import read_mask, read_volume

    image = read_volume(case.image)
    return image, np.asarray(read_mask(case.label, image)).astype(np.uint8)


# ----- one simulation ------------------------------------------------------------------------------


class LoopSimulation:
    """Runs the modes of ``cfg`` in ``out/work``; yields a :class:`RoundRecord` per round."""

    def __init__(self, cfg: LoopSimConfig, out: str | Path) -> None:
        cfg.validate()
        self.cfg, self.out = cfg, Path(out)
        self.work = self.out / "work"
        self.initial, self.stream, self.holdout = split_cases(list_cases(cfg.data), cfg)
        self._holdout_data: list[tuple[Volume, np.ndarray]] | None = None

    # -- helpers --
    def _train_config(self, steps: int, lr: float, seed: int, replay: float) -> TrainConfig:
        return TrainConfig(max_steps=int(steps), steps_per_epoch=max(1, int(steps)), batch_size=self.cfg.batch_size,
                           lr=lr, warmup_steps=min(20, max(1, steps // 10)), patience=0, replay_ratio=replay,
                           model_spec=dict(self.cfg.model_spec), augment=AugmentConfig.from_dict(self.cfg.augment),
                           seed=seed,
                           patch_size=list(self.cfg.patch_size) if self.cfg.patch_size else None,
                           preprocessing=self.cfg.preprocessing, cache_cases=self.cfg.cache_cases,
                           samples_per_case=self.cfg.samples_per_case,
                           device="cpu", num_threads=self.cfg.threads, checkpoint_every_steps=10**9)

    def _train(self, ds: RetrainingDataset, reg: ModelRegistry, from_version: str, cfg: TrainConfig) -> tuple[str, int]:
        result = run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version=from_version))
        return str(result.version), int(result.steps)

    def holdout_data(self) -> list[tuple[Volume, np.ndarray]]:
        if self._holdout_data is None:
            self._holdout_data = [_read(c) for c in self.holdout]
        return self._holdout_data

    def score(self, model: torch.nn.Module, card: Any) -> HoldoutScore:
        """Mean Dice per label, their mean, and the mean voxels to correct of a model on the held-out set.

        The effort on this fixed set isolates what the model learned from the per-case
        difficulty that dominates the effort on each new stream case.
        """
        scores: dict[int, list[float]] = {k: [] for k in self.cfg.labels}
        wrong = outline = beyond = 0
        data = self.holdout_data()
        for vol, ref in data:
            pred = run_generator(predict_volume(model, card, vol, device="cpu"))
            wrong += int(np.count_nonzero(pred.labels != ref))
            case_outline, case_beyond = self._tolerant_effort(pred.labels, ref, vol)
            outline += case_outline
            beyond += case_beyond
            for k in scores:
                d = dice_or_none(pred.labels, ref, int(k))
                if d is not None:
                    scores[k].append(d)
        per = {self.cfg.labels[k]: float(np.mean(v)) if v else math.nan for k, v in scores.items()}
        n = len(data)
        mean = mean_defined(per.values())
        return HoldoutScore(per, math.nan if mean is None else mean, wrong / n, outline / n, beyond / n)

    def _tolerant_effort(self, pred: np.ndarray, ref: np.ndarray, vol: Volume) -> tuple[int, int]:
        """Outline voxels to redraw (summed over the labels) and wrong voxels beyond the tolerance."""
        outline = sum(surface_to_redraw(pred, ref, vol.spacing, int(k), SURFACE_TOLERANCE_MM) for k in self.cfg.labels)
        return outline, voxels_beyond_tolerance(pred, ref, vol.spacing, SURFACE_TOLERANCE_MM)

    def reference_scores(self) -> HoldoutScore | None:
        if not self.cfg.reference:
            return None
        if not (Path(self.cfg.reference) / "card.json").is_file():
            log.warning("reference model %s not found; no reference line", self.cfg.reference)
            return None
        from unet_engine.model.checkpoint import load_checkpoint

        model, card = load_checkpoint(self.cfg.reference, "cpu")
        return self.score(model, card)

    def _initial_workspace(self) -> Path:
        """Train the starting model once (on the ``initial`` cases); each mode copies it."""
        base = self.work / "initial"
        if base.exists():
            shutil.rmtree(base)
        modality = {"MR": "MRI"}.get(self.cfg.modality or "", self.cfg.modality or "MRI")
        ds = RetrainingDataset.create(base / "dataset", self.cfg.labels, name="loop-sim", val_fraction=0.0,
                                      modality=modality)
        for c in self.initial:
            image, label = _read(c)
            ds.add_case(image, label, case_id=c.id, source_path=c.image)
        if self.cfg.plan == "auto" or self.cfg.planned is not None:
            self._apply_plan(ds)
        reg = ModelRegistry(base / "registry")
        cfg = self._train_config(self.cfg.initial_steps, self.cfg.lr_initial, self.cfg.seed, 0.0)
        version, _ = self._train(ds, reg, "scratch", cfg)
        (base / "VERSION").write_text(version)
        return base

    def _apply_plan(self, ds: RetrainingDataset) -> None:
        """Network, preprocessing, patch, batch and augmentation from a training plan (see the module doc)."""
        from unet_engine.planning import TrainingPlan, fingerprint_dataset, make_plan

        if self.cfg.planned is not None:
            plan = TrainingPlan.from_dict(self.cfg.planned)
            if plan.labels != self.cfg.labels:
                raise SegLoopError(f"loop-sim: the plan's labels {plan.labels} differ from the simulation's "
                                   f"{self.cfg.labels}")
        else:
            fp = fingerprint_dataset(ds, self.cfg.modality, seed=self.cfg.seed)
            plan = make_plan(fp, device="cpu", steps=max(self.cfg.initial_steps, 20), threads=self.cfg.threads,
                             overrides=dict(self.cfg.plan_overrides))
        c = self.cfg
        c.model_spec = plan.model_spec()
        c.preprocessing = plan.preprocessing()
        c.patch_size, c.batch_size = list(plan.patch_size), int(plan.batch_size)
        c.augment = dict(plan.augment)
        c.cache_cases, c.samples_per_case = int(plan.cache_cases), int(plan.samples_per_case)
        if c.steps_per_round is None:
            c.steps_per_round = int(plan.finetune_steps)
        if c.lr_round is None:
            c.lr_round = float(plan.finetune_lr)
        c.planned = plan.to_dict()
        c.plan_summary = plan.summary_lines()
        for line in c.plan_summary:
            log.info("plan: %s", line)

    # -- the loop --
    def run(self) -> Iterator[RoundRecord]:
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        self.work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        base = self._initial_workspace()
        init_train_s = time.perf_counter() - t0
        for mode in self.cfg.modes:
            folder = self.work / mode
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(base, folder)
            ds, reg = RetrainingDataset(folder / "dataset"), ModelRegistry(folder / "registry")
            version = (folder / "VERSION").read_text().strip()
            model, card = reg.load(version, "cpu")
            t = time.perf_counter()
            held = self.score(model, card)
            rec = RoundRecord(mode, 0, len(self.initial), holdout_dice=held.per_label, holdout_mean_dice=held.mean,
                              train_s=init_train_s, eval_s=time.perf_counter() - t, steps=self.cfg.initial_steps,
                              version=version, holdout_voxels_to_correct=held.voxels_to_correct,
                              holdout_surface_to_redraw=held.surface_to_redraw,
                              holdout_voxels_beyond_tolerance=held.voxels_beyond_tolerance)
            yield rec
            for r, case in enumerate(self.stream, start=1):
                rec, version, model, card = self._round(mode, r, case, ds, reg, version, model, card)
                yield rec

    def _round(self, mode: str, r: int, case: Case, ds: RetrainingDataset, reg: ModelRegistry, version: str,
               model: torch.nn.Module, card: Any) -> tuple[RoundRecord, str, torch.nn.Module, Any]:
        image, ref = _read(case)
        t_round = time.perf_counter()
        pred = run_generator(predict_volume(model, card, image, device="cpu")).labels
        predict_s = time.perf_counter() - t_round
        wrong = pred != ref
        per_fix = {self.cfg.labels[k]: int(np.count_nonzero((pred == k) != (ref == k))) for k in self.cfg.labels}
        case_d = {self.cfg.labels[k]: _or_nan(dice_or_none(pred, ref, int(k))) for k in self.cfg.labels}
        ds.add_case(image, ref, edited=wrong, model_version=version, reviewer="loop-sim", case_id=case.id,
                    source_path=case.image)
        seed = self.cfg.seed + 1000 * r
        round_steps, lr_round = self.cfg.steps_per_round, self.cfg.lr_round
        assert round_steps is not None and lr_round is not None  # validate() and _apply_plan() set them
        t_train = time.perf_counter()
        if mode == "scratch":
            cfg = self._train_config(round_steps, self.cfg.lr_initial, seed, 0.0)
            new_version, steps = self._train(ds, reg, "scratch", cfg)
        else:
            replay = self.cfg.replay_ratio if mode == "finetune" else 0.0
            cfg = self._train_config(round_steps, lr_round, seed, replay)
            new_version, steps = self._train(ds, reg, version, cfg)
        train_s = time.perf_counter() - t_train
        round_s = time.perf_counter() - t_round
        case_outline, case_beyond = self._tolerant_effort(pred, ref, image)  # not part of the user's wait
        model, card = reg.load(new_version, "cpu")
        t_eval = time.perf_counter()
        held = self.score(model, card)
        rec = RoundRecord(mode, r, len(ds), case.id, int(np.count_nonzero(wrong)), per_fix, case_d, held.per_label,
                          held.mean, predict_s, train_s, round_s, time.perf_counter() - t_eval, steps, new_version,
                          held.voxels_to_correct, case_outline, held.surface_to_redraw, case_beyond,
                          held.voxels_beyond_tolerance)
        log.info("%s round %d: %s, %d voxels to correct, held-out mean Dice %.4f, round %.1fs", mode, r, case.id,
                 rec.voxels_to_correct, held.mean, round_s)
        _drop_version(reg, version)  # keep the temp registry small: only the newest version is needed
        return rec, new_version, model, card


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _drop_version(reg: ModelRegistry, version: str) -> None:
    try:
        if version != reg.active:
            reg.delete(version)
    except SegLoopError as exc:  # bookkeeping only
        log.debug("could not delete %s: %s", version, exc)
