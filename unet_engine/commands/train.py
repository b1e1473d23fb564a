"""``segloop train``: fine-tune on a retraining dataset; the result lands in the model registry.

Runs as one process, or under ``torchrun --nproc_per_node=N`` (DistributedDataParallel:
the torchrun environment is detected and the process group started; rank 0 prints the
progress bar and writes the registry). Ctrl-C (or SIGTERM) saves the training state;
``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys

from unet_engine.errors import CancelledError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="fine-tune the model on a retraining dataset",
                              description="Fine-tune on a retraining dataset and register the result as a new "
                                          "model version. Also runs under torchrun for several GPUs/processes.")
    p.add_argument("--dataset", required=True, help="retraining dataset folder")
    p.add_argument("--from", dest="from_version", default=None,
                   help="start from a version (v0003, active), 'default' (bundled model), 'scratch', or a "
                        "checkpoint folder (default: the active version)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None)
    length.add_argument("--steps", type=int, default=None, help="optimisation steps in total")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None, help="TrainConfig as JSON text or a JSON file")
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--promote", action="store_true", help="make the new version the active model")
    p.add_argument("--resume", action="store_true", help="continue the saved (paused/cancelled) run")
    p.add_argument("--registry", default=None, help="registry folder (default: SEGLOOP_HOME/models)")
    p.add_argument("--state-dir", default=None, help="where the resumable state lives (default: in the registry)")
    p.add_argument("--name", default="", help="a name for the new version")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig, imported lazily
    from unet_engine.train_config import TrainConfig

    cfg = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    changes: dict = {}
    if args.epochs is not None:
        changes.update(epochs=args.epochs, max_steps=None)
    if args.steps is not None:
        changes["max_steps"] = args.steps
    if args.minutes is not None:
        changes["max_minutes"] = args.minutes
        if args.epochs is None and args.steps is None and not args.config:
            changes["epochs"] = 1000  # time-bounded: a long cosine horizon, cut by the clock
    if args.device is not None:
        changes["device"] = args.device
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.threads is not None:
        changes["num_threads"] = args.threads
    return cfg.replace(**changes) if changes else cfg


def run(args: argparse.Namespace) -> int:
    from unet_engine import distributed as dd
    from unet_engine.commands.progress import ProgressBar
    from unet_engine.dataset import RetrainingDataset
    from unet_engine.progress import CancelToken
    from unet_engine.registry import ModelRegistry
    from unet_engine.training import EpochReport, StepReport, fine_tune

    config = build_config(args)
    dataset = RetrainingDataset(args.dataset)
    registry = ModelRegistry(args.registry)
    cancel = CancelToken()
    env = dd.env_from_os()

    def on_signal(signum: int, _frame: object) -> None:
        cancel.cancel()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = ProgressBar("train") if env.is_main else None
    gen = fine_tune(config, dataset=dataset, registry=registry, from_version=args.from_version, cancel=cancel,
                    resume=args.resume, state_dir=args.state_dir, promote=args.promote, name=args.name)
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if bar is None:
                continue
            if isinstance(item, StepReport):
                bar.update(item.fraction, f"step {item.step}/{item.total_steps} loss {item.loss:.4f} "
                                          f"lr {item.lr:.2e} {item.images_per_s:.0f} img/s")
            elif isinstance(item, EpochReport) and item.val_mean_dice is not None:
                dice = " ".join(f"{k}={v:.3f}" for k, v in item.val_dice.items())
                tag = "start" if item.epoch == 0 else f"epoch {item.epoch}"
                print(f"\n{tag}: val Dice {dice} (mean {item.val_mean_dice:.4f})"
                      f"{' *best*' if item.improved else ''}", file=sys.stderr)
    except CancelledError as exc:
        if bar is not None:
            print(f"\nsegloop train: {exc}; continue with --resume", file=sys.stderr)
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        gen.close()  # release the model (and its DDP reducer) before the process group goes
        del gen
        if env.distributed:
            dd.shutdown()
    if bar is not None:
        bar.close(result.stopped)
        m = result.metrics
        mean = m.get("val_mean_dice")
        print(f"new model version {result.version} (parent {result.parent or '-'}), {result.steps} steps, "
              f"{result.stopped}, best val mean Dice "
              f"{'-' if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f'{mean:.4f}'}"
              f"{', now active' if args.promote else ''}")
    print(f"segloop train: rank {env.rank}/{env.world_size} weights sha256 {result.weights_sha256}")
    return 0
