"""Fine-tuning: a cancellable, pausable, resumable generator that ends in a registry version.

``fine_tune(config, dataset=..., registry=...)`` yields a :class:`StepReport` after every
optimisation step and an :class:`EpochReport` after every validation, and returns a
:class:`TrainResult`. The GUI drives it from a worker thread; ``segloop train`` from the
terminal, also under ``torchrun`` (see :mod:`unet_engine.training.distributed`).

What one run does:

* starts from a registry version (default: the active one; else the bundled default
  model, imported as the first version; else a new network from ``config.model_spec``);
* streams slices (2D/2.5D, along inference's slice axis) or patches (3D) from disk
  (:mod:`unet_engine.training.sampling`), each batch mixing cases new since the parent model with
  replayed earlier cases; augments on the device (:mod:`unet_engine.training.augment`);
* minimises CE + soft Dice (:class:`unet_engine.training.losses.DiceCELoss`) with extra CE weight
  on voxels the reviewer edited; AdamW, linear warm-up then cosine decay; AMP on CUDA;
* validates on the dataset's fixed val split with the inference code itself, keeps the
  best weights and stops early after ``patience`` epochs without improvement;
* saves a resumable state every ``checkpoint_every_steps`` steps and at pause/cancel
  (:mod:`unet_engine.training.state`); ``resume=True`` continues bit-for-bit;
* registers the best weights as a new version (rank 0 only under DDP).

Determinism: with the same seed, dataset and config a CPU run gives the same weights;
every random draw comes from generators whose states are saved in the resumable state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_engine.training import distributed as dd
from unet_engine.training import state as ts
from unet_engine.training.augment import Augmenter
from unet_engine.model.checkpoint import ModelCard
from unet_engine.devices import choose_device
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.training.losses import DiceCELoss
from unet_engine.model.network import build_model
from unet_engine.progress import CancelToken
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.sampling import PatchExtractor, ReplaySampler, decode_case
from unet_engine.training.config import TrainConfig, augment_for, batch_size_for
from unet_engine.training.setup import (
    StartPoint,
    dataset_reference,
    patch_size_for,
    prepare_registry,
    resolve_start,
    run_folder,
)
from unet_engine.training.validation import result_from_sums, validation_sums

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """After each optimisation step (``paused`` reports are sent when a pause begins)."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    images_per_s: float
    elapsed_s: float
    paused: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class EpochReport:
    """After each validation (epoch 0 = the starting model, before any step)."""

    epoch: int
    step: int
    train_loss: float | None
    val_loss: float | None
    val_dice: dict[str, float]
    val_mean_dice: float | None
    best_mean_dice: float | None
    improved: bool
    epoch_time_s: float
    elapsed_s: float
    patience_left: int


@dataclass
class TrainResult:
    version: str | None  # the new registry version (None on ranks other than 0 when it was not broadcast)
    checkpoint_path: Path | None
    parent: str | None
    steps: int
    epochs: int
    stopped: str  # "completed", "early-stopping" or "time-limit"
    best_epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    elapsed_s: float = 0.0


#: Share of a time budget by which the learning rate has decayed (the rest: final steps at the lowest rate).
TIME_SCHEDULE_SHARE = 0.95


class WarmupCosine:
    """LR factor: linear warm-up to 1 over ``warmup`` steps, cosine down to ``min_ratio`` at ``total``.

    ``time_floor`` (0..1, set by a run with a time budget) is the share of the budget used: the
    cosine's progress is never behind it, so a run that falls behind its planned pace (a busy
    machine) still decays to ``min_ratio`` by the deadline instead of being cut at a high rate.
    """

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)
        self.time_floor = 0.0

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, max(0.0, (step - self.warmup) / max(1, self.total - self.warmup), self.time_floor))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def weights_sha256(model: nn.Module) -> str:
    """Hash of a model's parameters and buffers (equal hashes = identical weights)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _empty_curves(labels: list[str]) -> dict[str, Any]:
    return {"epoch": [], "step": [], "train_loss": [], "val_loss": [], "val_mean_dice": [], "lr": [],
            "val_dice": {n: [] for n in labels}}


def fine_tune(config: TrainConfig, *, dataset: Any, registry: ModelRegistry | None = None,
              from_version: str | None = None, pause: threading.Event | None = None,
              cancel: CancelToken | None = None, resume: bool = False, state_dir: str | Path | None = None,
              promote: bool = False, name: str = "", notes: str = "",
              ) -> Generator[StepReport | EpochReport, None, TrainResult]:
    """Fine-tune on ``dataset`` (a :class:`~unet_engine.data.dataset.RetrainingDataset`).

    ``from_version``: a registry version (``"v0003"``, ``"active"``), ``"default"`` (the
    bundled model), ``"scratch"`` (new network from ``config.model_spec``), a checkpoint
    folder path, or None (active version, else bundled default, else scratch).
    ``pause``: while set, the run saves its state and waits (a ``paused`` StepReport is
    yielded first). ``cancel``: saves the state and raises CancelledError. ``resume``:
    continue the saved run in ``state_dir`` (default: the registry's ``training/`` folder
    for this dataset) with its saved config, except that ``max_minutes`` (training time
    summed over all sessions, pauses excluded) is taken from ``config``. A new run (not
    ``resume``) removes an older run's saved state in that folder as its training starts, so
    a later ``resume`` never continues the older run. ``promote``:
    make the new version active. Ranks other than 0 (torchrun) write nothing.
    """
    registry = registry or ModelRegistry()
    wall0 = time.perf_counter()
    device = choose_device(config.device)
    env = dd.init_from_env(device.type)
    device = dd.device_for(env, device)
    folder = Path(state_dir) if state_dir is not None else run_folder(registry, dataset)
    saved = None
    if resume:
        saved = ts.load_state(folder)
        config = TrainConfig.from_dict(saved[0]["config"]).replace(max_minutes=config.max_minutes)
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = config.deterministic
    torch.manual_seed(config.seed)  # model initialisation (scratch); every other draw has its own generator

    # ----- model, data, optimisation ---------------------------------------------------------
    if saved is not None:
        info = saved[0]
        start = StartPoint(build_model(info["card"]["spec"]), ModelCard.from_dict(info["card"]), info["parent"],
                           set(info["seen_hashes"]), info["origin"])
        start.model.load_state_dict(saved[1])
        train_ids, val_ids = list(info["train_ids"]), list(info["val_ids"])
    else:
        if env.is_main:
            prepare_registry(from_version, registry, dataset)
        dd.barrier()
        start = resolve_start(from_version, registry, config, dataset)
        train_ids = [c.id for c in dataset.train_cases()]
        val_ids = [c.id for c in dataset.val_cases()][: config.val_max_cases]
    card, model, spec = start.card, start.model, start.card.spec
    if config.batch_size is None:  # stored resolved: the registry and a resumed run see the number used
        config = config.replace(batch_size=batch_size_for(config, spec.dims, card.training))
    if config.augment is None:  # stored resolved too
        config = config.replace(augment=asdict(augment_for(config, card.training)))
    labels = dataset.labels
    if max(labels) >= spec.num_classes:
        raise SegLoopError(f"the dataset has label {max(labels)} but the model predicts only {spec.num_classes - 1} "
                           "labels; start from scratch (--from scratch) with a matching model", dataset.folder)
    if not train_ids:
        raise SegLoopError("the dataset has no training cases (all cases are in the validation split)", dataset.folder)
    known = {c.id: c for c in dataset.cases()}
    missing = [c for c in train_ids + val_ids if c not in known]
    if missing:
        raise SegLoopError(f"case(s) {', '.join(missing[:3])} left the dataset since this run started; "
                           "start a new run instead of resuming", dataset.folder)
    new_ids = [c for c in train_ids if known[c].hash not in start.seen_hashes]
    old_ids = [c for c in train_ids if known[c].hash in start.seen_hashes]
    if not new_ids and old_ids:  # nothing new: plain training on everything
        new_ids, old_ids = old_ids, []
    patch = patch_size_for(config, spec, card, [known[c] for c in train_ids])
    extractor = PatchExtractor(spec.dims, spec.context_slices, patch, config.foreground_fraction, config.edit_weight)
    sampler = ReplaySampler(new_ids=new_ids, old_ids=old_ids, loader=lambda cid: decode_case(dataset, cid, card.preprocessing),
                            extractor=extractor, batch_size=config.batch_size, replay_ratio=config.replay_ratio,
                            cache_cases=config.cache_cases, samples_per_case=config.samples_per_case, seed=config.seed,
                            rank=env.rank, world=env.world_size)
    augmenter = Augmenter(config.augment, spec.dims)
    aug_gen = torch.Generator().manual_seed(int(config.seed) * 1000 + 17 + env.rank)
    model.to(device).train()
    net: nn.Module = model
    if env.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = DiceCELoss(spec.num_classes, ce_weight=config.ce_weight, dice_weight=config.dice_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                  weight_decay=config.weight_decay)
    total = config.total_steps
    schedule = WarmupCosine(config.warmup_steps, total, config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # a time budget: the cosine ends by this many seconds even when steps run slower than planned
    # (one clock per process, so not under DDP, where every rank must keep the same rate)
    deadline_s = None if config.max_minutes is None or env.distributed else config.max_minutes * 60.0 * TIME_SCHEDULE_SHARE
    use_amp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    label_names = [labels[k] for k in sorted(labels)]
    bk: dict[str, Any] = {"step": 0, "epoch": 0, "best": None, "best_epoch": 0, "bad_epochs": 0, "elapsed": 0.0,
                          "epoch_loss_sum": 0.0, "epoch_loss_n": 0, "baseline": None, "curves": _empty_curves(label_names)}
    held: dict[str, dict[str, torch.Tensor] | None] = {"best_state": None}
    if saved is not None:
        info, _, held["best_state"], opt_state = saved
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(info["scheduler"])
        if info.get("scaler"):
            scaler.load_state_dict(info["scaler"])
        bk.update(info["bookkeeping"])
        if len(info["ranks"]) != env.world_size:
            raise SegLoopError(f"the saved run used {len(info['ranks'])} process(es); resume it with the same number",
                               folder)
        mine = info["ranks"][env.rank]
        sampler.load_state(mine["sampler"])
        aug_gen.set_state(ts.b64_to_byte_tensor(mine["aug_rng"]))
        torch.set_rng_state(ts.b64_to_byte_tensor(mine["torch_rng"]))
        if device.type == "cuda" and mine.get("cuda_rng"):
            torch.cuda.set_rng_state(ts.b64_to_byte_tensor(mine["cuda_rng"]), device)
        log.info("resumed run at step %d from %s", bk["step"], folder)

    def save() -> None:
        mine = {"sampler": sampler.state(), "aug_rng": ts.tensor_to_b64(aug_gen.get_state()),
                "torch_rng": ts.tensor_to_b64(torch.get_rng_state()),
                "cuda_rng": ts.tensor_to_b64(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None}
        ranks = dd.gather_objects(mine)
        bk["elapsed"] = elapsed()
        if env.is_main:
            ts.save_state(folder, model_state=model.state_dict(), best_state=held["best_state"],
                          optimizer_state=optimizer.state_dict(), info={
                              "step": bk["step"], "config": config.to_dict(), "card": card.to_dict(),
                              "parent": start.parent, "origin": start.origin, "seen_hashes": sorted(start.seen_hashes),
                              "train_ids": train_ids, "val_ids": val_ids, "scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict() if use_amp else None, "bookkeeping": bk, "ranks": ranks,
                              "dataset": dataset_reference(dataset, registry)})
        dd.barrier()

    session0 = time.perf_counter()
    elapsed_before = float(bk["elapsed"])

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - session0

    def validate() -> Any:
        dd.broadcast_buffers(model)
        mine_ids = val_ids[env.rank :: env.world_size]
        sums = validation_sums(model, card, dataset, mine_ids, labels, device=device,
                               batch_size=config.val_batch_size, cancel=None if env.distributed else cancel,
                               loss_fn=loss_fn)
        t = dd.all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=device if device.type == "cuda" else "cpu"))
        return result_from_sums(t.cpu().numpy(), labels)

    def record(res: Any, train_loss: float | None) -> None:
        c = bk["curves"]
        c["epoch"].append(bk["epoch"])
        c["step"].append(bk["step"])
        c["train_loss"].append(train_loss)
        c["val_loss"].append(res.loss)
        c["val_mean_dice"].append(res.mean_dice)
        c["lr"].append(bk.get("last_lr", float(optimizer.param_groups[0]["lr"])))
        for n in label_names:
            c["val_dice"][n].append(res.dice.get(n))

    def end_epoch(epoch_time: float) -> Generator[EpochReport, None, bool]:
        """Validate, track the best weights, report; returns True to stop early."""
        snapshot = json.loads(json.dumps(bk))
        bk["epoch"] += 1
        train_loss = bk["epoch_loss_sum"] / max(1, bk["epoch_loss_n"])
        bk["epoch_loss_sum"], bk["epoch_loss_n"] = 0.0, 0
        if not (val_ids and (bk["epoch"] % config.validate_every_epochs == 0 or bk["step"] == total)):
            record(_NoVal(), train_loss)
            bk["pending_end"] = False
            yield EpochReport(bk["epoch"], bk["step"], train_loss, None, {}, None, None, False, epoch_time, elapsed(),
                              config.patience)
            return False
        try:
            res = validate()
        except CancelledError:
            bk.clear()
            bk.update(snapshot)  # still pending: a resumed run validates this epoch first
            save()
            raise CancelledError(f"training cancelled during validation at step {bk['step']} of {total}; the state "
                                 f"is saved in {folder} and the run can be resumed") from None
        record(res, train_loss)
        score = res.mean_dice if res.mean_dice is not None else -math.inf
        improved = bk["best"] is None or score > bk["best"] + config.min_delta
        if improved:
            bk["best"], bk["best_epoch"], bk["bad_epochs"] = score, bk["epoch"], 0
            held["best_state"] = _cpu_state(model)
        else:
            bk["bad_epochs"] += 1
        bk["pending_end"] = False
        left = config.patience - bk["bad_epochs"] if config.patience else config.patience
        yield EpochReport(bk["epoch"], bk["step"], train_loss, res.loss, res.dice, res.mean_dice, bk["best"], improved,
                          epoch_time, elapsed(), left)
        return bool(config.patience and bk["bad_epochs"] >= config.patience and bk["step"] < total)

    # ----- a new run replaces an older run's saved state now (not at its first save) -----------
    if saved is None and env.is_main:
        ts.retire_state(folder)

    # ----- baseline ----------------------------------------------------------------------------
    if saved is None and val_ids and config.validate_at_start:
        t0 = time.perf_counter()
        res = validate()
        bk["baseline"] = res.as_metrics()
        record(res, None)
        yield EpochReport(0, 0, None, res.loss, res.dice, res.mean_dice, None, False, time.perf_counter() - t0,
                          elapsed(), config.patience)

    # ----- the loop ----------------------------------------------------------------------------
    stopped = "completed"
    epoch_t0 = time.perf_counter()
    while True:
        if bk.get("pending_end"):  # end of an epoch (also when resuming a run cancelled during validation)
            if (yield from end_epoch(time.perf_counter() - epoch_t0)):
                stopped = "early-stopping"
                break
            epoch_t0 = time.perf_counter()
        if bk["step"] >= total:
            break
        want_cancel = cancel is not None and cancel.cancelled
        want_pause = pause is not None and pause.is_set()
        out_of_time = config.max_minutes is not None and elapsed() >= config.max_minutes * 60.0
        want_cancel, want_pause, out_of_time = dd.stop_flags(want_cancel, want_pause, out_of_time, device=_flag_dev(device))
        if want_pause and not want_cancel:
            save()
            yield StepReport(bk["step"], total, bk["epoch"], math.nan, float(optimizer.param_groups[0]["lr"]), 0.0,
                             elapsed(), paused=True)
            while True:
                time.sleep(0.1)
                c_now = cancel is not None and cancel.cancelled
                p_now = pause is not None and pause.is_set()
                c_now, p_now = dd.stop_flags(c_now, p_now, device=_flag_dev(device))
                if c_now or not p_now:
                    want_cancel = c_now
                    break
            session0, elapsed_before = time.perf_counter(), float(bk["elapsed"])
        if want_cancel:
            save()
            raise CancelledError(f"training cancelled at step {bk['step']} of {total}; the state is saved in {folder} "
                                 "and the run can be resumed")
        if out_of_time:
            stopped = "time-limit"
            break
        t_step = time.perf_counter()
        images, labs, weights = sampler.next_batch()
        x = torch.from_numpy(images).to(device, non_blocking=True)
        y = torch.from_numpy(labs.astype(np.int64)).to(device, non_blocking=True)
        w = torch.from_numpy(weights).to(device, non_blocking=True)
        x, y, w = augmenter(x, y, w, aug_gen)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = net(x)
        loss = loss_fn(logits.float(), y, w)
        if not torch.isfinite(loss):
            raise SegLoopError(f"the training loss became {float(loss)} at step {bk['step']}; lower the learning rate")
        scaler.scale(loss).backward()
        if config.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr = bk["last_lr"] = float(optimizer.param_groups[0]["lr"])
        if deadline_s is not None:
            schedule.time_floor = min(1.0, elapsed() / deadline_s)
        scheduler.step()
        bk["step"] += 1
        loss_v = float(loss.detach())
        bk["epoch_loss_sum"] += loss_v
        bk["epoch_loss_n"] += 1
        dt = max(time.perf_counter() - t_step, 1e-9)
        if bk["step"] % config.steps_per_epoch == 0 or bk["step"] == total:
            bk["pending_end"] = True
        try:
            yield StepReport(bk["step"], total, bk["epoch"] + 1, loss_v, lr, images.shape[0] * env.world_size / dt,
                             elapsed())
        except GeneratorExit:  # the consumer dropped the run (e.g. a worker quit): keep it resumable
            if not env.distributed:
                save()
            raise
        if bk["step"] % config.checkpoint_every_steps == 0 and bk["step"] < total:
            save()

    # ----- finish: best weights into the registry ---------------------------------------------------
    dd.broadcast_buffers(model)
    if held["best_state"] is not None:
        model.load_state_dict(held["best_state"])
    model.eval()
    metrics = _final_metrics(bk, label_names, len(val_ids))
    version = path = None
    if env.is_main:
        new_card = _new_card(card, dataset, config, patch, bk, metrics, len(train_ids), len(val_ids))
        info = registry.add_version(
            model.to("cpu"), new_card, parent=start.parent, promote=promote, name=name, notes=notes,
            source="scratch" if start.origin == "scratch" else "fine-tune",
            dataset={"folder": dataset_reference(dataset, registry), "name": dataset.name,
                     "cases": [{"id": c, "hash": known[c].hash, "split": known[c].split} for c in train_ids + val_ids]},
            config=config.to_dict(), metrics=metrics, curves=bk["curves"])
        version, path = info.version, info.path
        ts.clear_state(folder)
        model.to(device)
    version = dd.broadcast_object(version)
    sha = weights_sha256(model)
    log.info("rank %d finished at step %d (%s); weights sha256 %s", env.rank, bk["step"], stopped, sha)
    return TrainResult(version=version, checkpoint_path=path if env.is_main else registry.versions_dir / str(version),
                       parent=start.parent, steps=bk["step"], epochs=bk["epoch"], stopped=stopped,
                       best_epoch=bk["best_epoch"], metrics=metrics, curves=bk["curves"], weights_sha256=sha,
                       elapsed_s=time.perf_counter() - wall0)


class _NoVal:
    loss = None
    mean_dice = None
    dice: dict[str, float] = {}


def _flag_dev(device: torch.device) -> torch.device:
    return device if device.type == "cuda" else torch.device("cpu")


def _final_metrics(bk: dict[str, Any], names: list[str], val_cases: int) -> dict[str, Any]:
    """A version's metrics: the best epoch's validation (labels n/a in every validation case
    listed in ``val_na_labels``, never a Dice), with the number of cases behind it."""
    c = bk["curves"]
    out: dict[str, Any] = {"steps": bk["step"], "epochs": bk["epoch"], "best_epoch": bk["best_epoch"],
                           "val_cases": val_cases}
    if bk["best"] is not None and bk["best_epoch"] in c["epoch"]:
        i = c["epoch"].index(bk["best_epoch"])
        out["val_dice"] = {n: c["val_dice"][n][i] for n in names if c["val_dice"][n][i] is not None}
        out["val_na_labels"] = [n for n in names if c["val_dice"][n][i] is None]
        out["val_mean_dice"] = c["val_mean_dice"][i]
        out["val_loss"] = c["val_loss"][i]
    if bk.get("baseline"):
        out["baseline_val_dice"] = bk["baseline"]["val_dice"]
        out["baseline_val_mean_dice"] = bk["baseline"]["val_mean_dice"]
    return out


def _new_card(card: ModelCard, dataset: Any, config: TrainConfig, patch: tuple[int, ...], bk: dict[str, Any],
              metrics: dict[str, Any], n_train: int, n_val: int) -> ModelCard:
    new = ModelCard.from_dict(card.to_dict())
    new.labels = {0: "background", **dataset.labels}
    new.training = {"config": config.to_dict(), "steps": bk["step"], "epochs": bk["epoch"],
                    "dataset": {"name": dataset.name, "train_cases": n_train, "val_cases": n_val}}
    new.training["patch_size"] = list(patch)  # 3D inference tiles with it; fine-tunes keep it
    new.metrics = dict(metrics)
    return new
