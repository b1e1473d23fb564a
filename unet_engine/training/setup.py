"""Where a fine-tune starts (which model, which parent) and the sizes it trains on."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from unet_engine.model.checkpoint import CARD_NAME, ModelCard, load_card, load_checkpoint
from unet_engine.errors import SegLoopError
from unet_engine.model.network import ModelSpec, UNet, build_model, required_multiple, with_more_classes
from unet_engine.paths import BUNDLED_MODELS
from unet_engine.model.preprocessing import PreprocessConfig, as_config, resampled_shape, slice_axis_for_spacing
from unet_engine.registry.versions import ModelRegistry
from unet_engine.inference.sliding_window import default_patch_size
from unet_engine.training.config import TrainConfig
from unet_engine.volume import float3

log = logging.getLogger(__name__)


@dataclass
class StartPoint:
    """The model a run starts from and what it had already seen."""

    model: nn.Module
    card: ModelCard
    parent: str | None  # registry version the new version descends from
    seen_hashes: set[str] = field(default_factory=set)  # cases (train split) the parent was trained on
    origin: str = "scratch"  # "version", "checkpoint" or "scratch"


def _seen(registry: ModelRegistry, version: str, card: ModelCard) -> set[str]:
    info = registry.get(version)
    cases = (info.dataset or {}).get("cases") or ((card.training or {}).get("dataset") or {}).get("cases") or []
    return {c["hash"] for c in cases if isinstance(c, dict) and c.get("split", "train") == "train" and c.get("hash")}


def scratch_start(config: TrainConfig, dataset: Any) -> StartPoint:
    """A new network from ``config.model_spec`` (defaults: 2D, one channel, the dataset's labels),
    preprocessed as ``config.preprocessing`` says (a training plan's), else by the dataset's modality."""
    spec_d = {"dims": 2, "in_channels": 1, "num_classes": dataset.num_classes, "base_width": 16, "depth": 4}
    spec_d.update(config.model_spec or {})
    spec = ModelSpec.from_dict(spec_d)
    if config.preprocessing is not None:
        pre = PreprocessConfig.from_dict(config.preprocessing)
    else:
        pre = PreprocessConfig(mode="ct" if str(dataset.modality).upper() == "CT" else "auto")
    card = ModelCard(spec=spec, preprocessing=pre.to_dict(),
                     labels={0: "background", **dataset.labels}, name="SegLoop (trained from scratch)")
    return StartPoint(build_model(spec), card, None, set(), "scratch")


def prepare_registry(from_version: str | None, registry: ModelRegistry, dataset: Any = None) -> None:
    """Import the bundled default model when the run needs it (rank 0 only under DDP).

    ``None`` with an empty registry imports and promotes it as the first version;
    ``"default"`` imports it (once) when the registry does not hold it yet. With a
    ``dataset`` whose labels contradict the bundled model's, nothing is imported: the
    run then starts from scratch (``None``) or is refused (``"default"``) by
    :func:`resolve_start`, and the registry is left as it was.
    """
    choice = (from_version or "").strip()
    src = BUNDLED_MODELS / "default"
    if choice not in ("", "default") or not (src / CARD_NAME).is_file():
        return
    if dataset is not None and bundled_label_clash(dataset):
        return
    if not choice:
        registry.ensure_default()
    elif not any(v.source == "bundled-default" for v in registry.list()):
        registry.import_checkpoint(src, source="bundled-default", promote=registry.active is None)


def bundled_label_clash(dataset: Any) -> list[str]:
    """How the bundled default model's labels contradict ``dataset``'s (empty: they agree)."""
    src = BUNDLED_MODELS / "default"
    return _label_clash(load_card(src).labels, dataset.labels) if (src / CARD_NAME).is_file() else []


def _label_clash(model_labels: dict[int, str], labels: dict[int, str]) -> list[str]:
    """Label values a model and a dataset name differently."""
    return [f"label {k} is {v!r} for the model but {labels[k]!r} in the dataset"
            for k, v in sorted(model_labels.items()) if k != 0 and k in labels and labels[k] != v]


def resolve_start(from_version: str | None, registry: ModelRegistry, config: TrainConfig, dataset: Any) -> StartPoint:
    """See :func:`unet_engine.training.fine_tune.fine_tune` for the accepted ``from_version`` values."""
    choice = (from_version or "").strip()
    if choice == "scratch":
        return scratch_start(config, dataset)
    if choice == "default":
        found = [v for v in registry.list() if v.source == "bundled-default"]
        if not found:
            clash = bundled_label_clash(dataset)
            if clash:
                raise SegLoopError("the bundled default model's labels contradict the dataset's: " + "; ".join(clash) +
                                   "; start from scratch or from a model with the dataset's labels", dataset.folder)
            raise SegLoopError("there is no bundled default model to start from (unet_engine/resources/models/default); "
                               "use --from scratch or a version")
        choice = found[-1].version
    if not choice:
        if registry.active is None:
            log.info("no active model (and no bundled default with the dataset's labels): training a new network "
                     "from scratch")
            return scratch_start(config, dataset)
        choice = registry.active
    path = Path(choice).expanduser()
    if path.is_dir():
        model, card = load_checkpoint(path, "cpu")
        return fit_to_dataset(StartPoint(model, card, None, set(), "checkpoint"), dataset)
    version = registry.resolve(choice)
    model, card = registry.load(version, "cpu")
    return fit_to_dataset(StartPoint(model, card, version, _seen(registry, version, card), "version"), dataset)


def fit_to_dataset(start: StartPoint, dataset: Any) -> StartPoint:
    """Check a start model against the dataset's labels and give it outputs for labels added since.

    A label value the model predicts under another name than the dataset's is refused (a
    run must never teach "anterior" voxels to be "spleen"); labels the dataset gained after
    the model was made (a versioned label-schema change) get new network outputs
    (:func:`unet_engine.model.network.with_more_classes`), the old ones kept.
    """
    labels = dataset.labels
    clash = _label_clash(start.card.labels, labels)
    if clash:
        raise SegLoopError("the start model's labels contradict the dataset's: " + "; ".join(clash) +
                           "; start from a model with the dataset's labels, or from scratch", dataset.folder)
    need = max(labels) + 1
    if need > start.card.spec.num_classes:
        log.info("the dataset has labels up to %d; adding outputs to the %d-class start model", need - 1,
                 start.card.spec.num_classes)
        assert isinstance(start.model, UNet), "start models are built by build_model"
        start.model = with_more_classes(start.model, need)
        card = ModelCard.from_dict(start.card.to_dict())
        card.spec = start.model.spec
        card.labels = {**card.labels, **{k: v for k, v in labels.items() if k not in card.labels}}
        start.card = card
    return start


def run_folder(registry: ModelRegistry, dataset: Any) -> Path:
    """Default folder of the resumable state of a run on ``dataset``.

    A project's dataset and registry are sibling folders: the state is keyed by the dataset
    folder's name, so it survives the project folder being renamed, moved or copied. Any
    other dataset is keyed by its absolute path (:func:`path_run_key`).
    """
    folder = Path(dataset.folder).resolve()
    if folder.parent == Path(registry.root).resolve().parent:
        return registry.root / "training" / folder.name
    return registry.root / "training" / path_run_key(folder)


def dataset_reference(dataset: Any, registry: ModelRegistry) -> str:
    """Where a run's dataset is, as a version or saved run records it: relative to the registry
    for a project's dataset (``"../dataset"``: the project folder can move), else absolute."""
    folder = Path(dataset.folder).resolve()
    if folder.parent == Path(registry.root).resolve().parent:
        return f"../{folder.name}"
    return str(folder)


def path_run_key(folder: Path) -> str:
    """State key of a dataset outside a project: its folder name plus a hash of its absolute path."""
    resolved = str(Path(folder).resolve())
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(resolved).name)[:40] + "-" + hashlib.sha1(resolved.encode()).hexdigest()[:10]


def patch_size_for(config: TrainConfig, spec: ModelSpec, card: ModelCard, cases: list[Any]) -> tuple[int, ...]:
    """Training sample size: ``config.patch_size``; for a fine-tune, the patch the start model
    was trained with (its card: e.g. a planned first model's); else the largest slice (2D) /
    volume capped at 128 (3D) of the training cases, rounded up to the network's multiple."""
    m = required_multiple(spec)
    if config.patch_size is not None:
        ps = [int(p) for p in config.patch_size]
        if len(ps) != spec.dims:
            raise SegLoopError(f"training config: patch_size {ps} has {len(ps)} sizes but the model is {spec.dims}D")
        return tuple(max(m, int(math.ceil(p / m) * m)) for p in ps)
    trained = (card.training or {}).get("patch_size")
    if isinstance(trained, list) and len(trained) == spec.dims and all(int(p) >= m and int(p) % m == 0 for p in trained):
        return tuple(int(p) for p in trained)
    target = as_config(card.preprocessing).target_spacing
    best = np.zeros(3, dtype=np.int64)
    planes: list[tuple[int, int]] = []
    for c in cases:
        shape = tuple(int(n) for n in c.shape)
        spacing = float3(c.spacing)
        if len(shape) != 3:
            continue
        work = resampled_shape(shape, spacing, target) if target is not None else shape
        if spec.dims == 2:
            ax = slice_axis_for_spacing(spacing)  # inference slices along the original grid's axis
            height, width = (n for i, n in enumerate(work) if i != ax)
            planes.append((height, width))
        else:
            best = np.maximum(best, work)
    if spec.dims == 2:
        if not planes:
            return (m * 4, m * 4)
        h, w = max(p[0] for p in planes), max(p[1] for p in planes)
        return (int(math.ceil(h / m) * m), int(math.ceil(w / m) * m))
    if not best.any():
        return (64, 64, 64)
    return tuple(int(v) for v in default_patch_size(tuple(int(b) for b in best), m))
