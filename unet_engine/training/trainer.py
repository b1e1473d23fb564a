"""One fine-tuning run as an object: set up, then step, validate, end epochs, save, finish.

:class:`Trainer` holds what a run is made of — the model, the optimizer and its
:class:`~unet_engine.training.schedule.LRSchedule`, the sampler behind a
:class:`~unet_engine.training.prefetch.BatchPrefetcher`, the generators — and its typed
:class:`~unet_engine.training.run_state.RunState`. :meth:`Trainer.run` is the loop
(pause, cancel, time budget, early stopping) as a generator of reports;
:func:`unet_engine.training.fine_tune.fine_tune` is its public entry point.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unet_engine.devices import choose_device, cpu_bf16_is_fast
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.model.checkpoint import ModelCard
from unet_engine.model.network import build_model
from unet_engine.progress import CancelToken
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training import distributed as dd
from unet_engine.training import state as ts
from unet_engine.training.augment import Augmenter
from unet_engine.training.config import TrainConfig, augment_for, batch_size_for
from unet_engine.training.losses import DiceCELoss
from unet_engine.training.prefetch import AugmentedSource, BatchPrefetcher
from unet_engine.training.reports import EpochReport, StepReport, TrainResult
from unet_engine.training.run_state import Curves, RunState
from unet_engine.training.sampling import PatchExtractor, ReplaySampler, decode_case
from unet_engine.training.schedule import TIME_SCHEDULE_SHARE, LRSchedule
from unet_engine.training.setup import (
    StartPoint,
    dataset_reference,
    patch_size_for,
    prepare_registry,
    resolve_start,
    run_folder,
)
from unet_engine.training.validation import ValidationResult, result_from_sums, validation_sums

log = logging.getLogger(__name__)

Saved = tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]


def weights_sha256(model: nn.Module) -> str:
    """Hash of a model's parameters and buffers (equal hashes = identical weights)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    """A run of ``config`` on ``dataset`` (see :func:`~unet_engine.training.fine_tune.fine_tune`
    for the arguments). Building it does the set-up: the start model, the data, the optimizer,
    and with ``resume`` the saved run's state."""

    def __init__(self, config: TrainConfig, *, dataset: Any, registry: ModelRegistry | None = None,
                 from_version: str | None = None, cancel: CancelToken | None = None, resume: bool = False,
                 state_dir: str | Path | None = None) -> None:
        self.wall0 = time.perf_counter()
        self.registry = registry or ModelRegistry()
        self.dataset, self.cancel, self.resumed = dataset, cancel, resume
        device = choose_device(config.device)
        self.env = dd.init_from_env(device.type)
        self.device = dd.device_for(self.env, device)
        self.folder = Path(state_dir) if state_dir is not None else run_folder(self.registry, dataset)
        saved: Saved | None = ts.load_state(self.folder) if resume else None
        if saved is not None:
            config = TrainConfig.from_dict(saved[0]["config"]).replace(max_minutes=config.max_minutes)
        self._configure_torch(config)
        self.start, self.train_ids, self.val_ids = self._start_point(saved, from_version, config)
        self.card = self.start.card
        self.model = self.start.model
        spec = self.card.spec
        if config.batch_size is None:  # stored resolved: the registry and a resumed run see the number used
            config = config.replace(batch_size=batch_size_for(config, spec.dims, self.card.training))
        if config.augment is None:  # stored resolved too
            config = config.replace(augment=asdict(augment_for(config, self.card.training)))
        if config.cpu_bf16 is None:  # resolved and stored: a resumed run keeps the precision it began with
            config = config.replace(cpu_bf16=self.device.type == "cpu" and cpu_bf16_is_fast())
        self.config = config
        self.labels: dict[int, str] = dataset.labels
        self.label_names = [self.labels[k] for k in sorted(self.labels)]
        self.known = {c.id: c for c in dataset.cases()}
        self._check_data()
        seen = self.start.seen_hashes
        #: training cases the start model has not seen, and those it has (replayed in every batch)
        self.new_ids = [c for c in self.train_ids if self.known[c].hash not in seen]
        self.replayed_ids = [c for c in self.train_ids if self.known[c].hash in seen]
        if not self.new_ids and self.replayed_ids:  # nothing new: plain training on everything
            self.new_ids, self.replayed_ids = self.replayed_ids, []
        self.patch = patch_size_for(config, spec, self.card, [self.known[c] for c in self.train_ids])
        extractor = PatchExtractor(spec.dims, spec.context_slices, self.patch, config.foreground_fraction,
                                   config.edit_weight)
        preprocessing = self.card.preprocessing
        assert config.batch_size is not None
        self.sampler = ReplaySampler(new_ids=self.new_ids, old_ids=self.replayed_ids,
                                     loader=lambda cid: decode_case(dataset, cid, preprocessing),
                                     extractor=extractor, batch_size=config.batch_size, replay_ratio=config.replay_ratio,
                                     cache_cases=config.cache_cases, samples_per_case=config.samples_per_case,
                                     seed=config.seed, rank=self.env.rank, world=self.env.world_size)
        assert config.augment is not None  # resolved above
        self.augmenter = Augmenter(config.augment, spec.dims)
        self.aug_gen = torch.Generator().manual_seed(int(config.seed) * 1000 + 17 + self.env.rank)
        #: batches with their augmentation drawn alongside (in the prefetch thread, ahead of the step)
        self.source = AugmentedSource(self.sampler, self.augmenter, self.aug_gen)
        #: channels-last tensors: faster convolutions on CPUs (oneDNN) and GPUs (cuDNN NHWC)
        self.memory_format = torch.channels_last_3d if spec.dims == 3 else torch.channels_last
        self.model.to(self.device).train()
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # documented; stubs omit it
        self.net: nn.Module = self.model
        if self.env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn = DiceCELoss(spec.num_classes, ce_weight=config.ce_weight, dice_weight=config.dice_weight)
        betas = (float(config.betas[0]), float(config.betas[1]))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=betas,
                                           weight_decay=config.weight_decay)
        # a time budget: the cosine ends by this many seconds even when steps run slower than planned
        # (one clock per process, so not under DDP, where every rank must keep the same rate)
        deadline = None if config.max_minutes is None or self.env.distributed else config.max_minutes * 60.0 * TIME_SCHEDULE_SHARE
        self.schedule = LRSchedule(self.optimizer, warmup=config.warmup_steps, total=config.total_steps,
                                   min_ratio=config.min_lr_ratio, deadline_s=deadline)
        self.use_amp = bool(config.amp and self.device.type == "cuda")  # float16, scaled losses
        self.cpu_bf16 = bool(config.cpu_bf16 and self.device.type == "cpu")  # bfloat16 needs no scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.state = RunState(curves=Curves.empty(self.label_names))
        self.best_weights: dict[str, torch.Tensor] | None = None
        if saved is not None:
            self._restore(saved)
        self._prefetcher: BatchPrefetcher | None = None
        self.restart_clock()

    # ----- set-up ------------------------------------------------------------------------------

    def _configure_torch(self, config: TrainConfig) -> None:
        if config.num_threads:
            torch.set_num_threads(int(config.num_threads))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not config.deterministic
            torch.backends.cudnn.deterministic = config.deterministic
        torch.manual_seed(config.seed)  # model initialisation (scratch); every other draw has its own generator

    def _start_point(self, saved: Saved | None, from_version: str | None,
                     config: TrainConfig) -> tuple[StartPoint, list[str], list[str]]:
        if saved is not None:
            info = saved[0]
            start = StartPoint(build_model(info["card"]["spec"]), ModelCard.from_dict(info["card"]), info["parent"],
                               set(info["seen_hashes"]), info["origin"])
            start.model.load_state_dict(saved[1])
            return start, list(info["train_ids"]), list(info["val_ids"])
        if self.env.is_main:
            prepare_registry(from_version, self.registry, self.dataset)
        dd.barrier()
        start = resolve_start(from_version, self.registry, config, self.dataset)
        train_ids = [c.id for c in self.dataset.train_cases()]
        val_ids = [c.id for c in self.dataset.val_cases()][: config.val_max_cases]
        return start, train_ids, val_ids

    def _check_data(self) -> None:
        folder = self.dataset.folder
        n_classes = self.card.spec.num_classes
        if max(self.labels) >= n_classes:
            raise SegLoopError(f"the dataset has label {max(self.labels)} but the model predicts only {n_classes - 1} "
                               "labels; start from scratch (--from scratch) with a matching model", folder)
        if not self.train_ids:
            raise SegLoopError("the dataset has no training cases (all cases are in the validation split)", folder)
        missing = [c for c in self.train_ids + self.val_ids if c not in self.known]
        if missing:
            raise SegLoopError(f"case(s) {', '.join(missing[:3])} left the dataset since this run started; "
                               "start a new run instead of resuming", folder)

    def _restore(self, saved: Saved) -> None:
        info, _, self.best_weights, opt_state = saved
        self.optimizer.load_state_dict(opt_state)  # the rates in use
        if info["format"] == ts.LEGACY_FORMAT:  # LambdaLR then; its run state was called "bookkeeping"
            self.state = RunState.from_dict(info["bookkeeping"])
            self.schedule.load_state_dict(self.schedule.state_at(int(info["scheduler"]["last_epoch"])))
        else:
            self.state = RunState.from_dict(info["run_state"])
            self.schedule.load_state_dict(info["scheduler"])
        if info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        if len(info["ranks"]) != self.env.world_size:
            raise SegLoopError(f"the saved run used {len(info['ranks'])} process(es); resume it with the same number",
                               self.folder)
        mine = info["ranks"][self.env.rank]
        self.sampler.load_state(mine["sampler"])
        self.aug_gen.set_state(ts.b64_to_byte_tensor(mine["aug_rng"]))
        torch.set_rng_state(ts.b64_to_byte_tensor(mine["torch_rng"]))
        if self.device.type == "cuda" and mine.get("cuda_rng"):
            torch.cuda.set_rng_state(ts.b64_to_byte_tensor(mine["cuda_rng"]), self.device)
        log.info("resumed run at step %d from %s", self.state.step, self.folder)

    # ----- clock and data ----------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return self.config.total_steps

    def restart_clock(self) -> None:
        """Training time counts from now on (a new session, or the end of a pause)."""
        self._session0, self._elapsed_before = time.perf_counter(), float(self.state.elapsed)

    def elapsed(self) -> float:
        """Training seconds over all sessions, pauses excluded."""
        return self._elapsed_before + time.perf_counter() - self._session0

    def _batches(self) -> BatchPrefetcher:
        if self._prefetcher is None:
            self._prefetcher = BatchPrefetcher(self.source, depth=self.config.prefetch_batches,
                                               pin=self.device.type == "cuda")
        return self._prefetcher

    def close(self) -> None:
        """Stop the batch thread (a finished, cancelled or dropped run)."""
        if self._prefetcher is not None:
            self._prefetcher.close()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ----- the four operations -----------------------------------------------------------------

    def train_step(self) -> StepReport:
        """One optimisation step on the next batch."""
        t0 = time.perf_counter()
        batch = self._batches().next()
        x, y, w = batch.to(self.device)
        assert batch.aug is not None  # drawn with the batch (AugmentedSource)
        x, y, weights = self.augmenter.apply(x, y, w, batch.aug)
        x = x.contiguous(memory_format=self.memory_format)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cpu_bf16 else torch.float16,
                            enabled=self.use_amp or self.cpu_bf16):
            logits = self.net(x)
        loss = self.loss_fn(logits.float(), y, weights)
        st = self.state
        loss_v = float(loss.detach())  # the step's one wait for the device
        if not math.isfinite(loss_v):
            raise SegLoopError(f"the training loss became {loss_v} at step {st.step}; lower the learning rate")
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = st.last_lr = self.lr
        st.step += 1
        self.schedule.advance(st.step, self.elapsed())
        st.epoch_loss_sum += loss_v
        st.epoch_loss_n += 1
        if st.step % self.config.steps_per_epoch == 0 or st.step == self.total_steps:
            st.pending_end = True
        dt = max(time.perf_counter() - t0, 1e-9)
        return StepReport(st.step, self.total_steps, st.epoch + 1, loss_v, lr,
                          batch.size * self.env.world_size / dt, self.elapsed())

    def validate(self) -> ValidationResult:
        """The current weights on the validation split (shared among ranks under DDP)."""
        dd.broadcast_buffers(self.model)
        mine = self.val_ids[self.env.rank :: self.env.world_size]
        sums = validation_sums(self.model, self.card, self.dataset, mine, self.labels, device=self.device,
                               batch_size=self.config.val_batch_size,
                               cancel=None if self.env.distributed else self.cancel, loss_fn=self.loss_fn)
        on = self.device if self.device.type == "cuda" else "cpu"
        total = dd.all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=on))
        return result_from_sums(total.cpu().numpy(), self.labels)

    def validate_start(self) -> EpochReport:
        """Epoch 0: the starting model's validation, kept as the run's baseline."""
        t0 = time.perf_counter()
        res = self.validate()
        self.state.baseline = res.as_metrics()
        self._record(res, None)
        return EpochReport(0, 0, None, res.loss, res.dice, res.mean_dice, None, False, time.perf_counter() - t0,
                           self.elapsed(), self.config.patience)

    def end_epoch(self, epoch_time: float) -> tuple[EpochReport, bool]:
        """Validate (when due), keep the best weights; returns the report and whether to stop early."""
        cfg, snapshot = self.config, self.state.copy()
        st = self.state
        st.epoch += 1
        train_loss = st.take_epoch_loss()
        if not (self.val_ids and (st.epoch % cfg.validate_every_epochs == 0 or st.step == self.total_steps)):
            self._record(None, train_loss)
            st.pending_end = False
            return EpochReport(st.epoch, st.step, train_loss, None, {}, None, None, False, epoch_time, self.elapsed(),
                               cfg.patience), False
        try:
            res = self.validate()
        except CancelledError:
            self.state = snapshot  # the epoch's end is still pending: a resumed run validates it first
            self.save()
            raise CancelledError(f"training cancelled during validation at step {snapshot.step} of {self.total_steps}; "
                                 f"the state is saved in {self.folder} and the run can be resumed") from None
        self._record(res, train_loss)
        score = res.mean_dice if res.mean_dice is not None else -math.inf
        improved = st.best is None or score > st.best + cfg.min_delta
        if improved:
            st.best, st.best_epoch, st.bad_epochs = score, st.epoch, 0
            self.best_weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_epochs += 1
        st.pending_end = False
        left = cfg.patience - st.bad_epochs if cfg.patience else cfg.patience
        report = EpochReport(st.epoch, st.step, train_loss, res.loss, res.dice, res.mean_dice, st.best, improved,
                             epoch_time, self.elapsed(), left)
        return report, bool(cfg.patience and st.bad_epochs >= cfg.patience and st.step < self.total_steps)

    def _record(self, res: ValidationResult | None, train_loss: float | None) -> None:
        st = self.state
        lr = st.last_lr if st.last_lr is not None else self.lr
        st.curves.append(epoch=st.epoch, step=st.step, train_loss=train_loss, result=res, lr=lr)

    def save(self) -> None:
        """Write the resumable state (every rank's sampler and generators; rank 0 writes)."""
        cuda = self.device.type == "cuda"
        before = self._prefetcher.sampler_state() if self._prefetcher is not None else self.source.state()
        mine = {"sampler": before["sampler"], "aug_rng": ts.tensor_to_b64(before["aug_rng"]),
                "torch_rng": ts.tensor_to_b64(torch.get_rng_state()),
                "cuda_rng": ts.tensor_to_b64(torch.cuda.get_rng_state(self.device)) if cuda else None}
        ranks = dd.gather_objects(mine)
        self.state.elapsed = self.elapsed()
        if self.env.is_main:
            s = self.start
            ts.save_state(self.folder, model_state=self.model.state_dict(), best_state=self.best_weights,
                          optimizer_state=self.optimizer.state_dict(), info={
                              "step": self.state.step, "config": self.config.to_dict(), "card": self.card.to_dict(),
                              "parent": s.parent, "origin": s.origin, "seen_hashes": sorted(s.seen_hashes),
                              "train_ids": self.train_ids, "val_ids": self.val_ids,
                              "scheduler": self.schedule.state_dict(),
                              "scaler": self.scaler.state_dict() if self.use_amp else None,
                              "run_state": self.state.to_dict(), "ranks": ranks,
                              "dataset": dataset_reference(self.dataset, self.registry)})
        dd.barrier()

    def stop_requests(self, pause: threading.Event | None) -> tuple[bool, bool, bool]:
        """``(cancel, pause, out of time)``, agreed among ranks."""
        cfg = self.config
        want_cancel = self.cancel is not None and self.cancel.cancelled
        want_pause = pause is not None and pause.is_set()
        out_of_time = cfg.max_minutes is not None and self.elapsed() >= cfg.max_minutes * 60.0
        c, p, t = dd.stop_flags(want_cancel, want_pause, out_of_time, device=self._flag_device())
        return c, p, t

    def _flag_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def wait_while_paused(self, pause: threading.Event) -> bool:
        """Block until the pause ends or a cancel comes; True when cancelled."""
        while True:
            time.sleep(0.1)
            c_now = self.cancel is not None and self.cancel.cancelled
            c_now, p_now = dd.stop_flags(c_now, pause.is_set(), device=self._flag_device())
            if c_now or not p_now:
                self.restart_clock()
                return c_now

    # ----- the loop ----------------------------------------------------------------------------

    def run(self, *, pause: threading.Event | None = None, promote: bool = False, name: str = "",
            notes: str = "") -> Generator[StepReport | EpochReport, None, TrainResult]:
        """Train to the end, yielding reports; returns the run's result (a new registry version)."""
        try:
            stopped = yield from self._loop(pause)
            return self.finish(stopped, promote=promote, name=name, notes=notes)
        finally:
            self.close()

    def _loop(self, pause: threading.Event | None) -> Generator[StepReport | EpochReport, None, str]:
        st, total = self.state, self.total_steps
        if not self.resumed and self.env.is_main:  # a new run replaces an older run's saved state now
            ts.retire_state(self.folder)
        if not self.resumed and self.val_ids and self.config.validate_at_start:
            yield self.validate_start()
        epoch_t0 = time.perf_counter()
        while True:
            st = self.state  # end_epoch may restore a snapshot
            if st.pending_end:  # an epoch ended (also when resuming a run cancelled during validation)
                report, stop = self.end_epoch(time.perf_counter() - epoch_t0)
                yield report
                if stop:
                    return "early-stopping"
                epoch_t0 = time.perf_counter()
            if st.step >= total:
                return "completed"
            want_cancel, want_pause, out_of_time = self.stop_requests(pause)
            if want_pause and not want_cancel and pause is not None:
                self.save()
                yield StepReport(st.step, total, st.epoch, math.nan, self.lr, 0.0, self.elapsed(), paused=True)
                want_cancel = self.wait_while_paused(pause)
            if want_cancel:
                self.save()
                raise CancelledError(f"training cancelled at step {st.step} of {total}; the state is saved in "
                                     f"{self.folder} and the run can be resumed")
            if out_of_time:
                return "time-limit"
            step_report = self.train_step()
            try:
                yield step_report
            except GeneratorExit:  # the consumer dropped the run (e.g. a worker quit): keep it resumable
                if not self.env.distributed:
                    self.save()
                raise
            if st.step % self.config.checkpoint_every_steps == 0 and st.step < total:
                self.save()

    def finish(self, stopped: str, *, promote: bool = False, name: str = "", notes: str = "") -> TrainResult:
        """The best weights into the registry as a new version (rank 0); the saved state is cleared."""
        self.close()
        dd.broadcast_buffers(self.model)
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        st = self.state
        metrics = st.metrics(len(self.val_ids))
        version: str | None = None
        path: Path | None = None
        if self.env.is_main:
            ds = self.dataset
            cases = [{"id": c, "hash": self.known[c].hash, "split": self.known[c].split}
                     for c in self.train_ids + self.val_ids]
            info = self.registry.add_version(
                self.model.to("cpu"), self._version_card(metrics), parent=self.start.parent, promote=promote,
                name=name, notes=notes, source="scratch" if self.start.origin == "scratch" else "fine-tune",
                dataset={"folder": dataset_reference(ds, self.registry), "name": ds.name, "cases": cases},
                config=self.config.to_dict(), metrics=metrics, curves=st.curves.to_dict())
            version, path = info.version, info.path
            ts.clear_state(self.folder)
            self.model.to(self.device)
        version = dd.broadcast_object(version)
        sha = weights_sha256(self.model)
        log.info("rank %d finished at step %d (%s); weights sha256 %s", self.env.rank, st.step, stopped, sha)
        if not self.env.is_main:
            path = self.registry.versions_dir / str(version)
        return TrainResult(version=version, checkpoint_path=path, parent=self.start.parent, steps=st.step,
                           epochs=st.epoch, stopped=stopped, best_epoch=st.best_epoch, metrics=metrics,
                           curves=st.curves.to_dict(), weights_sha256=sha, elapsed_s=time.perf_counter() - self.wall0)

    def _version_card(self, metrics: dict[str, Any]) -> ModelCard:
        new = ModelCard.from_dict(self.card.to_dict())
        new.labels = {0: "background", **self.dataset.labels}
        new.training = {"config": self.config.to_dict(), "steps": self.state.step, "epochs": self.state.epoch,
                        "dataset": {"name": self.dataset.name, "train_cases": len(self.train_ids),
                                    "val_cases": len(self.val_ids)},
                        "patch_size": list(self.patch)}  # 3D inference tiles with it; fine-tunes keep it
        new.metrics = dict(metrics)
        return new
