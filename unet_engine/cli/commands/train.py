"""``segloop train``: train on a retraining dataset; the result lands in the model registry.

``--dataset DIR`` (with ``--registry DIR``) or ``--project NAME``: a project without a
model gets its first model planned from its dataset and trained from scratch for
``--minutes``; a project with one is fine-tuned (see :mod:`unet_engine.cli.commands.train_setup`).
Validation is printed honestly: "no validation yet" below 2 validation cases, n/a for a
label absent from prediction and reference.

Runs as one process, or under ``torchrun --nproc_per_node=N`` (DistributedDataParallel:
the torchrun environment is detected and the process group started; rank 0 prints the
progress bar and writes the registry). Ctrl-C (or SIGTERM) saves the training state;
``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from unet_engine.cli.commands.report import epoch_line, honest_metrics, version_val_cases
from unet_engine.cli.commands.targets import add_project_option, one_of, open_project, quote
from unet_engine.cli.commands.train_setup import RunSetup, build_config  # noqa: F401 (build_config: API)
from unet_engine.errors import CancelledError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune a model (a project's, or on a dataset folder)",
                              description="Train on a retraining dataset and register the result as a new model "
                                          "version. With --project: a project without a model gets its first model "
                                          "planned and trained for --minutes; otherwise its model is fine-tuned. Also "
                                          "runs under torchrun for several GPUs/processes.")
    p.add_argument("--dataset", default=None, help="retraining dataset folder (or --project NAME)")
    add_project_option(p)
    p.add_argument("--from", dest="from_version", default=None,
                   help="start from a version (v0003, active), 'default' (bundled model), 'scratch', or a "
                        "checkpoint folder (default: the active version; a project: its start model, or a planned "
                        "first model)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None)
    length.add_argument("--steps", type=int, default=None, help="optimisation steps in total")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget: the schedule is fitted to it (a project's first model is planned for it)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="do not measure training steps: plan a first model with estimated step times; "
                        "a fine-tune runs a long schedule the clock cuts at --minutes")
    p.add_argument("--plan-only", action="store_true",
                   help="with --project and no model: plan the first model, print and save the plan, do not train")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None, help="TrainConfig as JSON text or a JSON file (with a plan: changes to it)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--promote", action="store_true",
                   help="make the new version the active model (a project's first model always becomes active)")
    p.add_argument("--resume", action="store_true", help="continue the saved (paused/cancelled) run")
    p.add_argument("--registry", default=None, help="registry folder (default: SEGLOOP_HOME/models; not with --project)")
    p.add_argument("--state-dir", default=None, help="where the resumable state lives (default: in the registry)")
    p.add_argument("--name", default="", help="a name for the new version")
    p.set_defaults(func=run)


def _setup(args: argparse.Namespace, distributed: bool) -> RunSetup | None:
    from unet_engine.cli.commands.train_setup import plain_setup, project_setup

    one_of(args.project, args.dataset, "--dataset DIR")
    if args.project is None:
        return plain_setup(args, distributed)
    return project_setup(args, open_project(args.project), distributed)


def run(args: argparse.Namespace) -> int:
    from unet_engine.training import distributed as dd
    from unet_engine.cli.commands.progress import ProgressBar
    from unet_engine.progress import CancelToken
    from unet_engine.training.fine_tune import EpochReport, StepReport, fine_tune

    env = dd.env_from_os()
    setup = _setup(args, env.distributed)
    if setup is None:  # --plan-only
        return 0
    dataset, registry, config = setup.dataset, setup.registry, setup.config
    labels = dataset.labels
    names = [labels[k] for k in sorted(labels)]
    n_val = len(dataset.val_cases())
    n_val = min(n_val, config.val_max_cases) if config.val_max_cases is not None else n_val
    cancel = CancelToken()

    def on_signal(signum: int, _frame: object) -> None:
        cancel.cancel()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = ProgressBar("train") if env.is_main else None
    gen = fine_tune(config, dataset=dataset, registry=registry, from_version=setup.from_version, cancel=cancel,
                    resume=args.resume, state_dir=args.state_dir, promote=setup.promote, name=args.name)
    said_no_val = False
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
            elif isinstance(item, EpochReport):
                validated = item.val_mean_dice is not None or bool(item.val_dice)
                if n_val >= 2 and validated or n_val < 2 and not said_no_val:
                    print(f"\n{epoch_line(item, names, n_val)}", file=sys.stderr)
                    said_no_val = n_val < 2
    except CancelledError as exc:
        if bar is not None:
            again = f"segloop train --project {quote(args.project)} --resume" if args.project else "--resume"
            print(f"\nsegloop train: {exc}; continue with {again}", file=sys.stderr)
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
        print(_result_line(result, setup, registry))
    print(f"segloop train: rank {env.rank}/{env.world_size} weights sha256 {result.weights_sha256}")
    return 0


def _result_line(result: Any, setup: RunSetup, registry: Any) -> str:
    """``new model version v0003 (parent v0002), 120 steps, completed, <validation>, now active``."""
    from unet_engine.training.validation import validation_text

    try:
        val_cases = version_val_cases(registry.get(result.version))
    except Exception:  # noqa: BLE001 - the line must print even if the registry record is odd
        val_cases = None
    text = validation_text(honest_metrics(result.metrics, val_cases))
    first = ""
    if setup.first_model:
        first = " first model, from scratch," if setup.from_version == "scratch" else " first model,"
    active = registry.active == result.version
    where = f"the active model of project {setup.project.name!r}" if setup.project is not None else "active"
    line = (f"new model version {result.version} (parent {result.parent or '-'}),{first} {result.steps} steps, "
            f"{result.stopped}, {text}{f', now {where}' if active else ''}")
    if setup.project is not None and not active:
        line += (f"\n{registry.active} stays active; compare and promote with: segloop models --project "
                 f"{quote(setup.project.name)} compare {registry.active} {result.version} / promote {result.version}")
    return line
