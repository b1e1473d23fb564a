"""Turn what the user typed after ``--model`` into a checkpoint folder.

* a path (folder, ``model.safetensors`` or ``card.json``) -> that checkpoint;
* ``"default"`` or ``None`` -> the active version of ``registry`` (a project's registry,
  or by default the one in ``SEGLOOP_HOME/models``) when one is set, else the bundled
  model ``unet_engine/resources/models/default``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from unet_engine import devices, paths
from unet_engine.model.checkpoint import CARD_NAME, WEIGHTS_NAME, ModelCard, load_checkpoint
from unet_engine.errors import CheckpointError
from unet_engine.registry.versions import ModelRegistry

log = logging.getLogger(__name__)

DEFAULT_NAMES = ("default", "")


def _registry_active(registry: ModelRegistry | None) -> Path | None:
    """The registry's active checkpoint folder; None when there is none or it cannot be read
    (a broken registry must not hide the bundled model)."""
    try:
        return (registry or ModelRegistry()).active_checkpoint_path()
    except Exception as exc:  # noqa: BLE001 - logged; the bundled model is the answer then
        log.warning("could not read the model registry (%s); using the bundled model", exc)
        return None


def _is_checkpoint(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file() and (folder / CARD_NAME).is_file()


def resolve_model_path(name_or_path: str | Path | None = None, registry: ModelRegistry | None = None) -> Path:
    """The checkpoint folder for a path, ``"default"`` or ``None`` (see the module docstring)."""
    if name_or_path is None or str(name_or_path).strip().lower() in DEFAULT_NAMES:
        active = _registry_active(registry)
        if active is not None:
            folder = active.parent if active.name in (WEIGHTS_NAME, CARD_NAME) else active
            if _is_checkpoint(folder):
                return folder
            log.warning("the registry's active model %s is missing; using the bundled model", folder)
        bundled = paths.BUNDLED_MODELS / "default"
        if _is_checkpoint(bundled):
            return bundled
        raise CheckpointError(
            "no default model: the model registry has no active version and the bundled model is missing; "
            "pass --model PATH to a checkpoint folder (model.safetensors + card.json)",
            bundled,
        )
    path = Path(name_or_path).expanduser()
    folder = path.parent if path.name in (WEIGHTS_NAME, CARD_NAME) or (path.suffix == ".safetensors" and path.is_file()) else path
    if not folder.exists():
        raise CheckpointError("no such model checkpoint (expected a folder with model.safetensors and card.json, "
                              "or 'default')", path)
    if not folder.is_dir():
        raise CheckpointError("not a model checkpoint: expected a folder with model.safetensors and card.json", path)
    # exists(), not is_file(): a card or weights that is a pipe or a device gets its precise
    # refusal from unet_engine.model.checkpoint (which reads only regular files), not "not a checkpoint"
    if not (folder / CARD_NAME).exists() and not (folder / WEIGHTS_NAME).exists():
        raise CheckpointError("this folder is not a model checkpoint (no model.safetensors / card.json in it)", folder)
    return path if path.suffix == ".safetensors" and path.is_file() else folder


def load_model_for_inference(path: str | Path | None = "default",
                             device: str | torch.device | None = None) -> tuple[nn.Module, ModelCard]:
    """Resolve a model name or path (:func:`resolve_model_path`) and load it in eval mode."""
    folder = resolve_model_path(None if path is None else str(path))
    return load_checkpoint(folder, device=devices.choose_device(device))
