"""What ``segloop train`` runs: dataset, registry, config, start model and promotion.

* ``--dataset DIR [--registry DIR]``: as always; ``--from`` picks the start (default: the
  registry's active version, else the bundled model).
* ``--project NAME`` with no model (:meth:`Project.start_version` is None) or ``--from
  scratch``: the first model is planned from the dataset fingerprint for ``--minutes``
  (:func:`unet_engine.planning.plan_first_model`), the plan is printed with its reasons and
  saved in the project, and the run trains that plan from scratch. A project's first model
  becomes its active version (there is nothing to compare it with).
* ``--project NAME`` with a model: fine-tunes from ``start_version()`` (or ``--from``),
  with the data settings of the project's plan when the start model has the plan's shape.
  A project never starts from the bundled model unless it was created from it.
* ``--minutes M`` without ``--steps``/``--epochs``: a few steps are measured and the
  schedule is fitted to M minutes (:func:`unet_engine.planning.fit_config_to_minutes`);
  ``--no-calibrate`` (and torchrun) keep the long schedule the clock cuts at M minutes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_engine.cli.commands.targets import quote
from unet_engine.errors import ProjectError, SegLoopError
from unet_engine.training.config import TrainConfig, read_json_object

_LENGTH_KEYS = ("max_steps", "epochs")


@dataclass
class RunSetup:
    """Everything ``fine_tune`` is called with (None: nothing to train, e.g. ``--plan-only``)."""

    dataset: Any
    registry: Any
    config: TrainConfig
    from_version: str | None
    promote: bool
    project: Any = None
    first_model: bool = False


def config_changes(text: str | None) -> dict[str, Any]:
    """The settings of ``--config`` (JSON text or a JSON file) as given."""
    return read_json_object(text, "training config") if text else {}


def build_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: TrainConfig()) with ``--config`` and the command-line options applied."""
    given = config_changes(args.config)
    cfg = (base.replace(**given) if given else base) if base is not None else TrainConfig.from_dict(given)
    changes: dict = {}
    if args.epochs is not None:
        changes.update(epochs=args.epochs, max_steps=None)
    if args.steps is not None:
        changes["max_steps"] = args.steps
    if args.minutes is not None:
        changes["max_minutes"] = args.minutes
        if base is None and args.epochs is None and args.steps is None and not given:
            changes["epochs"] = 1000  # time-bounded: a long cosine horizon, cut by the clock (or fitted)
    if args.device is not None:
        changes["device"] = args.device
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.threads is not None:
        changes["num_threads"] = args.threads
    return cfg.replace(**changes) if changes else cfg


def fit_minutes(args: argparse.Namespace, config: TrainConfig, dataset: Any, registry: Any, from_version: str | None,
                distributed: bool) -> TrainConfig:
    """Measure steps and fit the schedule to ``--minutes`` when no length was given (see the module docstring)."""
    given = config_changes(args.config)
    if (args.minutes is None or args.steps is not None or args.epochs is not None or args.no_calibrate
            or distributed or args.resume or any(k in given for k in _LENGTH_KEYS)):
        return config
    from unet_engine.planning import fit_config_to_minutes

    fitted = fit_config_to_minutes(config, dataset, args.minutes, registry=registry, from_version=from_version)
    print(f"{args.minutes:g} min: {fitted.max_steps} steps (measured on this machine)")
    return fitted


def plain_setup(args: argparse.Namespace, distributed: bool) -> RunSetup:
    """``--dataset DIR [--registry DIR]``."""
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.registry.versions import ModelRegistry

    if args.plan_only:
        raise SegLoopError("--plan-only plans a project's first model; use it with --project NAME")
    dataset, registry = RetrainingDataset(args.dataset), ModelRegistry(args.registry)
    config = fit_minutes(args, build_config(args), dataset, registry, args.from_version, distributed)
    return RunSetup(dataset, registry, config, args.from_version, args.promote)


def project_setup(args: argparse.Namespace, project: Any, distributed: bool) -> RunSetup | None:
    """``--project NAME``: the first model (planned) or a fine-tune (see the module docstring)."""
    if args.registry is not None:
        raise SegLoopError("give either --registry DIR or --project NAME, not both (a project has its own registry)")
    dataset, registry = project.dataset(), project.registry()
    start = project.start_version()
    choice = (args.from_version or "").strip() or None
    if choice is not None and choice.lower() in ("default", "bundled") and project.bundled_start_path() is None:
        raise ProjectError(f"project {project.name!r} did not start from the bundled model, so it never trains from "
                           "it; use --from scratch, one of its versions, or a checkpoint folder")
    if args.resume:  # the saved run knows its start; a first model is still promoted
        return RunSetup(dataset, registry, build_config(args), None, args.promote or start is None, project,
                        start is None)
    if choice == "scratch" or (choice is None and start is None):
        return _first_model(args, project, dataset, registry, distributed, start)
    if args.plan_only:
        raise SegLoopError(f"project {project.name!r} already has a model ({start}); --plan-only plans a first model "
                           "(add --from scratch to plan a new one)")
    from_version = choice or start
    print(f"project {project.name!r}: fine-tuning from {from_version} on {len(dataset)} cases")
    config = build_config(args, plan_base(project, registry, from_version))
    config = fit_minutes(args, config, dataset, registry, from_version, distributed)
    first = start is None  # e.g. --from a checkpoint folder: it becomes the project's first model
    return RunSetup(dataset, registry, config, from_version, args.promote or first, project, first_model=first)


def _first_model(args: argparse.Namespace, project: Any, dataset: Any, registry: Any, distributed: bool,
                 start: str | None) -> RunSetup | None:
    from unet_engine.planning import TrainingPlan, plan_first_model
    from unet_engine.projects import FIRST_MODEL_MIN_CASES

    name = quote(project.name)
    n = len(dataset)
    if n < FIRST_MODEL_MIN_CASES:
        need = FIRST_MODEL_MIN_CASES - n
        raise ProjectError(f"project {project.name!r} has {n} corrected case{'s' if n != 1 else ''}; its first model "
                           f"needs at least {FIRST_MODEL_MIN_CASES}: add {need} more (segloop dataset add --project "
                           f"{name} --image SCAN --label MASK)")
    if distributed:
        if project.plan is None:
            raise ProjectError(f"plan the first model of project {project.name!r} in one process first "
                               f"(segloop train --project {name} --minutes M --plan-only), then run torchrun")
        plan = TrainingPlan.from_dict(project.plan)
        print(f"project {project.name!r}: training the saved plan of its first model ({project.plan_path})")
    else:
        if args.minutes is None:
            raise ProjectError(f"project {project.name!r} has no model yet; give --minutes M, the time its first "
                               "model is planned for (e.g. --minutes 10)")
        what = "has no model yet: planning its first model" if start is None else "(--from scratch): planning a new model"
        print(f"project {project.name!r} {what} from its {n} cases "
              f"({len(dataset.train_cases())} train, {len(dataset.val_cases())} val) for {args.minutes:g} min"
              + ("" if args.no_calibrate else " (measuring a few training steps)"))
        plan = plan_first_model(dataset, project.modality, minutes=args.minutes, device=args.device or "auto",
                                calibrate=not args.no_calibrate, threads=args.threads)
        for line in plan.summary_lines():
            print(f"  {line}")
        project.save_plan(plan.to_dict())
        print(f"plan saved to {project.plan_path}")
    if args.plan_only:
        print(f"train it with: segloop train --project {name} --minutes {plan.minutes or args.minutes:g}")
        return None
    config = build_config(args, plan.train_config())
    if config.total_steps != plan.max_steps:
        print(f"the run takes {config.total_steps} steps instead of the plan's {plan.max_steps} (command-line options)")
    promote = True if project.registry().active is None else args.promote
    return RunSetup(dataset, registry, config, "scratch", promote, project, first_model=True)


def plan_base(project: Any, registry: Any, from_version: str) -> TrainConfig:
    """A fine-tune's starting config: the plan's data settings (patch, batch, augmentation) and
    per-case learning rate when the start model has the planned shape, else the defaults."""
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.planning import finetune_settings

    try:
        data = project.plan
        if from_version == "default":
            folder = BUNDLED_MODELS / "default"
        elif Path(from_version).expanduser().is_dir():
            folder = Path(from_version).expanduser()
        else:
            folder = registry.get(registry.resolve(from_version)).path
    except SegLoopError:
        return TrainConfig()
    return TrainConfig(**finetune_settings(data, folder))
