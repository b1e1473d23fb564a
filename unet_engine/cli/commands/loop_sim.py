"""``segloop loop-sim``: simulate the correct-and-retrain loop and plot its learning curve.

See :mod:`unet_engine.experiments.loop_sim`. Writes ``loop_sim.csv``, ``loop_sim.png`` and
``summary.json`` to ``--out`` (the CSV and plot are rewritten after every round, so a long
run can be watched); the temporary datasets and registries go to ``--out/work`` and are
removed at the end unless ``--keep-work``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unet_engine.experiments.loop_sim import LoopSimConfig, LoopSimulation, RoundRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("loop-sim", help="simulate the human-in-the-loop learning curve",
                              description="Start from a model trained on --initial cases, then for each of --rounds "
                                          "new cases: predict, count the voxels to correct, add the corrected case, "
                                          "fine-tune for --steps-per-round steps, score on a fixed held-out set.")
    p.add_argument("--data", required=True, help="MSD task folder (imagesTr + labelsTr) or a SegLoop dataset")
    p.add_argument("--out", required=True, help="output folder (CSV, PNG, summary.json)")
    p.add_argument("--mode", choices=["finetune", "finetune-noreplay", "scratch"], default="finetune")
    p.add_argument("--compare", action="store_true", help="run all three modes")
    p.add_argument("--initial", type=int, default=5, help="cases the starting model is trained on")
    p.add_argument("--rounds", type=int, default=30, help="new cases corrected one by one")
    p.add_argument("--holdout", type=int, default=20, help="held-out cases scored after every round")
    p.add_argument("--initial-steps", type=int, default=300, help="training steps of the starting model")
    p.add_argument("--steps-per-round", type=int, default=None,
                   help="training steps after each corrected case (default: the plan's with --plan/--project, else 60)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="training batch (default: 16 for 2D; for 3D the reference model's, else 2)")
    p.add_argument("--patch-size", default=None, metavar="D,H,W",
                   help="training patch, e.g. 40,56,40 for a 3D model (default: whole slices in 2D; for 3D the "
                        "reference model's training patch, else the largest volume)")
    p.add_argument("--lr-initial", type=float, default=1e-3, help="learning rate from scratch (starting model, scratch mode)")
    p.add_argument("--lr-round", type=float, default=None,
                   help="learning rate of the per-round fine-tune (default: the plan's with --plan/--project, else 3e-4)")
    p.add_argument("--replay-ratio", type=float, default=0.5, help="share of each batch from earlier cases (finetune)")
    p.add_argument("--spec", default=None, help='ModelSpec JSON for new networks (default: the reference model\'s spec, '
                                                'else {"dims": 2, "base_width": 16, "depth": 4})')
    p.add_argument("--labels", default=None, help="e.g. 1=anterior,2=posterior (default: the reference model's labels)")
    p.add_argument("--reference", default="default",
                   help="checkpoint scored on the held-out set for comparison: 'default' (bundled model), a folder, "
                        "or 'none'; its validation split provides the held-out cases")
    p.add_argument("--holdout-from", default=None, metavar="DATASET",
                   help="take the held-out cases from this SegLoop dataset's validation split (the split the "
                        "reference model was validated on), instead of the reference card's")
    p.add_argument("--plan", choices=["auto"], default=None,
                   help="auto: the network, preprocessing, patch, batch and augmentation come from a plan of the "
                        "starting cases' fingerprint (unet_engine.planning), not from the reference model; "
                        "--spec/--batch-size/--patch-size then fix those fields of the plan")
    p.add_argument("--modality", default=None, help="CT, MR, US or other (default: the data's dataset.json, else MR)")
    p.add_argument("--group-pattern", default=None, metavar="REGEX",
                   help="cases whose ids share this regex's match form a group kept on one side of the held-out "
                        r"split, e.g. 'patient\d+' (both frames of a patient)")
    p.add_argument("--project", default=None, metavar="NAME",
                   help="take the labels, modality and saved training plan from this SegLoop project "
                        "(no saved plan: --plan auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadiest on a shared machine)")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary datasets and registries")
    p.add_argument("--replot", action="store_true",
                   help="no simulation: re-score the reference on the held-out set of the run in --out (its "
                        "summary.json) and rewrite the CSV, PNG and summary")
    p.set_defaults(func=run)


def _reference(name: str) -> str | None:
    from unet_engine.paths import BUNDLED_MODELS

    if not name or name.lower() == "none":
        return None
    if name == "default":
        folder = BUNDLED_MODELS / "default"
        return str(folder) if (folder / "card.json").is_file() else None
    return str(Path(name).expanduser())


def _project(name: str) -> tuple[dict[int, str], str, dict | None]:
    from unet_engine.projects import ProjectStore

    p = ProjectStore().open(name)
    return dict(p.labels), str(p.modality), p.plan


def build_config(args: argparse.Namespace) -> LoopSimConfig:
    from unet_engine.model.checkpoint import load_card
    from unet_engine.cli.commands.dataset import parse_labels
    from unet_engine.errors import SegLoopError
    from unet_engine.data.importing import msd_labels, msd_modality, read_msd_meta
    from unet_engine.experiments.loop_sim import DEFAULT_SPEC, MODES, LoopSimConfig
    from unet_engine.modality import normalize_modality
    from unet_engine.training.config import TrainConfig, batch_size_for

    data = args.data
    meta = read_msd_meta(data)
    reference = _reference(args.reference)
    card = load_card(reference) if reference and Path(reference, "card.json").is_file() else None
    holdout_ids = None
    if args.holdout_from:
        from unet_engine.data.dataset import RetrainingDataset

        holdout_ids = [c.id for c in RetrainingDataset(args.holdout_from).val_cases()]
    plan_mode, planned = args.plan, None
    project_labels = modality = None
    if args.project:
        project_labels, modality, planned = _project(args.project)
        plan_mode = None if planned is not None else "auto"
    if args.modality:
        modality = normalize_modality(args.modality)
    elif modality is None and msd_modality(meta):
        try:
            modality = normalize_modality(msd_modality(meta), strict=False)
        except SegLoopError:
            modality = None  # an unusual dataset.json modality: the trainer's own rule (CT or not) applies
    if args.labels:
        labels = parse_labels(args.labels)
        if project_labels is not None and labels != project_labels:
            raise SegLoopError(f"loop-sim: --labels {labels} differ from project {args.project!r}'s {project_labels}")
    elif project_labels is not None:
        labels = project_labels
    elif card is not None:
        labels = {k: v for k, v in card.labels.items() if k != 0}
    elif from_msd := msd_labels(meta):
        labels = from_msd
    else:
        raise SegLoopError("loop-sim: pass --labels (e.g. 1=anterior,2=posterior) when there is no reference model")
    if card is not None and {k: v for k, v in card.labels.items() if k != 0} != labels:
        print(f"loop-sim: reference {reference} segments other labels than {labels}; no reference line",
              file=sys.stderr)
        reference = card = None
    if plan_mode == "auto" or planned is not None:
        return _planned_config(args, data, labels, modality, plan_mode, planned, reference, holdout_ids)
    if args.spec:
        spec = _spec(args.spec)
    elif card is not None:
        spec = {k: v for k, v in card.spec.to_dict().items() if k != "num_classes"}
    else:
        spec = dict(DEFAULT_SPEC)
    spec = {**spec, "num_classes": max(labels) + 1}
    dims = int(spec.get("dims", 2))
    augment = {"flip_axes": [1] if dims == 2 else [2]}  # left-right only (A/P labels)
    same_dims = card if card is not None and card.spec.dims == dims else None  # the reference model, of these dims
    patch = _patch_size(args.patch_size)
    if patch is None and same_dims is not None and dims == 3 and same_dims.training.get("patch_size"):
        patch = [int(v) for v in same_dims.training["patch_size"]]
    batch = batch_size_for(TrainConfig(batch_size=args.batch_size), dims,
                           same_dims.training if same_dims is not None else None)
    return LoopSimConfig(data=data, labels=labels,
                         modes=list(MODES) if args.compare else [args.mode], initial=args.initial, rounds=args.rounds,
                         holdout=args.holdout, initial_steps=args.initial_steps,
                         steps_per_round=60 if args.steps_per_round is None else args.steps_per_round,
                         batch_size=batch, lr_initial=args.lr_initial,
                         lr_round=3e-4 if args.lr_round is None else args.lr_round,
                         replay_ratio=args.replay_ratio, model_spec=spec, augment=augment, reference=reference,
                         holdout_ids=holdout_ids, seed=args.seed, threads=args.threads, patch_size=patch,
                         modality=modality, group_pattern=args.group_pattern)


def _spec(text: str) -> dict:
    from unet_engine.training.config import read_json_object

    return read_json_object(text, "loop-sim: --spec")


def _planned_config(args: argparse.Namespace, data: str, labels: dict[int, str], modality: str | None,
                    plan_mode: str | None, planned: dict | None, reference: str | None,
                    holdout_ids: list[str] | None) -> LoopSimConfig:
    """A simulation whose network comes from a training plan (auto, or a project's saved one)."""
    from unet_engine.experiments.loop_sim import MODES, LoopSimConfig

    overrides: dict = {}
    if args.spec:
        spec = _spec(args.spec)
        overrides.update({k: spec[k] for k in ("dims", "base_width", "depth", "context_slices") if k in spec})
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    patch = _patch_size(args.patch_size)
    if patch is not None:
        overrides["patch_size"] = patch
    return LoopSimConfig(data=data, labels=labels, modes=list(MODES) if args.compare else [args.mode],
                         initial=args.initial, rounds=args.rounds, holdout=args.holdout,
                         initial_steps=args.initial_steps, steps_per_round=args.steps_per_round,
                         lr_initial=args.lr_initial, lr_round=args.lr_round, replay_ratio=args.replay_ratio,
                         reference=reference, holdout_ids=holdout_ids, seed=args.seed, threads=args.threads,
                         modality=modality, plan=plan_mode, plan_overrides=overrides, planned=planned,
                         group_pattern=args.group_pattern)


def _patch_size(text: str | None) -> list[int] | None:
    from unet_engine.errors import SegLoopError

    if not text:
        return None
    try:
        patch = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        patch = []
    if len(patch) not in (2, 3) or min(patch) < 1:
        raise SegLoopError(f"loop-sim: --patch-size must be H,W or D,H,W of positive integers (got {text!r})")
    return patch


def _title(cfg: LoopSimConfig, sim: LoopSimulation) -> str:
    """The plot's title, once the plan (if any) has set the per-round budget."""
    net = ""
    if cfg.planned:
        p = cfg.planned
        kind = "2.5D" if p.get("context_slices") else f"{p.get('dims')}D"
        net = (f"planned {kind} w{p.get('base_width')} d{p.get('depth')} patch {'x'.join(map(str, p.get('patch_size', [])))}"
               f" batch {p.get('batch_size')}, ")
    return (f"loop-sim: {net}start {cfg.initial} cases/{cfg.initial_steps} steps, {cfg.steps_per_round} steps/round "
            f"at lr {cfg.lr_round:g}, {len(sim.holdout)} held-out cases, seed {cfg.seed}")


def replot(args: argparse.Namespace) -> int:
    """Rewrite the outputs of an earlier run (e.g. after the reference model changed)."""
    from unet_engine.experiments import loop_sim_report as report
    from unet_engine.errors import SegLoopError
    from unet_engine.experiments.loop_sim import LoopSimConfig, LoopSimulation

    out = Path(args.out)
    try:
        saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SegLoopError(f"loop-sim --replot: no readable summary.json ({exc})", out) from None
    d = dict(saved["config"])
    d["labels"] = {int(k): v for k, v in d["labels"].items()}
    if args.reference != "default" or _reference("default"):
        d["reference"] = _reference(args.reference)
    cfg = LoopSimConfig(**d)
    sim = LoopSimulation(cfg, out)
    if [c.id for c in sim.holdout] != saved["cases"]["holdout"]:
        raise SegLoopError("loop-sim --replot: the held-out cases differ from the saved run's", out)
    names = [cfg.labels[k] for k in sorted(cfg.labels)]
    records = report.records_from_csv(out / "loop_sim.csv", names)
    reference = sim.reference_scores()
    report.write_csv(out / "loop_sim.csv", records, names, reference)
    report.plot(out / "loop_sim.png", records, reference, _title(cfg, sim))
    report.write_summary(out / "summary.json", cfg.to_dict(), report.summarize(records, reference), saved["cases"])
    if reference is not None:
        print(f"reference {cfg.reference}: held-out mean Dice {reference.mean:.4f}, "
              f"{reference.voxels_to_correct:.0f} voxels to correct per case")
    return 0


def run(args: argparse.Namespace) -> int:
    from unet_engine.experiments import loop_sim_report as report
    from unet_engine.experiments.loop_sim import LoopSimulation

    if args.replot:
        return replot(args)
    cfg = build_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim = LoopSimulation(cfg, out)
    names = [cfg.labels[k] for k in sorted(cfg.labels)]
    csv_path, png_path, summary_path = out / "loop_sim.csv", out / "loop_sim.png", out / "summary.json"
    print(f"loop-sim: {len(sim.initial)} initial + {len(sim.stream)} streamed cases, {len(sim.holdout)} held out; "
          f"modes {', '.join(cfg.modes)}", file=sys.stderr)
    reference = None
    records: list[RoundRecord] = []
    try:
        for rec in sim.run():
            if not records and cfg.plan_summary:
                print("training plan of the starting model:\n  " + "\n  ".join(cfg.plan_summary), file=sys.stderr)
            records.append(rec)
            effort = "-" if rec.voxels_to_correct is None else str(rec.voxels_to_correct)
            print(f"{rec.mode:<18} round {rec.round:>3} cases {rec.corrected_cases:>3} to-correct {effort:>6} "
                  f"held-out Dice {rec.holdout_mean_dice:.4f} to-correct {rec.holdout_voxels_to_correct:6.0f} "
                  f"beyond 1 mm {rec.holdout_voxels_beyond_tolerance:5.0f} outline {rec.holdout_surface_to_redraw:5.0f} "
                  f"round {rec.round_s:5.1f}s", file=sys.stderr)
            report.write_csv(csv_path, records, names, reference)
        reference = sim.reference_scores()  # scored last: the reference may be written while this runs
        if reference is not None:
            print(f"reference {cfg.reference}: held-out mean Dice {reference.mean:.4f}, "
                  f"{reference.voxels_to_correct:.0f} voxels to correct per case", file=sys.stderr)
            report.write_csv(csv_path, records, names, reference)
    finally:
        if records:
            report.plot(png_path, records, reference, _title(cfg, sim))
            summary = report.summarize(records, reference)
            cases = {"initial": [c.id for c in sim.initial], "stream": [c.id for c in sim.stream],
                     "holdout": [c.id for c in sim.holdout]}
            report.write_summary(summary_path, cfg.to_dict(), summary, cases)
        if not args.keep_work:
            shutil.rmtree(sim.work, ignore_errors=True)
    for mode, s in report.summarize(records, reference).items():
        if mode == "reference":
            continue
        ratio = s["effort_ratio_last_over_first"]
        print(f"{mode}: held-out mean Dice {s['start_holdout_mean_dice']:.4f} -> {s['end_holdout_mean_dice']:.4f}; "
              f"voxels to correct (first/last {s['effort_window']} rounds) {s['effort_first_mean']} -> "
              f"{s['effort_last_mean']} (x{'-' if ratio is None else f'{ratio:.2f}'}); "
              f"median round {s['round_s_median']}s")
    print(f"wrote {csv_path}, {png_path}, {summary_path}")
    return 0
