"""Checkpoints: a folder holding ``model.safetensors`` (weights) and ``card.json`` (model card).

The card makes the checkpoint self-describing (nnU-Net style): the architecture
(:class:`~unet_engine.model.network.ModelSpec`), the preprocessing both training and inference
must apply, the label names and colours, training history, metrics and lineage.

Safety rules:

* weights are read with safetensors only, never unpickled (a ``torch.save`` file renamed
  to ``model.safetensors`` is recognised and refused with a clear message);
* every problem (truncated or corrupted file, missing card, missing or mismatched
  tensors) is a :class:`~unet_engine.errors.CheckpointError` naming the file;
* :func:`save_checkpoint` writes into a temporary sibling folder and renames it into
  place; an existing checkpoint is first renamed aside (restored if the second rename
  fails), so a complete checkpoint exists under the folder's name or beside it at every
  instant, on every OS; a swap interrupted between its two renames is repaired by the next
  load or save.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unet_engine.io.atomic import fsync_path
from unet_engine.errors import CheckpointError
from unet_engine.model.card_checks import (
    MAX_WEIGHTS_BYTES,
    check_card_dict,
    check_regular_file,
    check_spec,
    max_weights_bytes,
    parse_card_json,
    read_card_text,
)
from unet_engine.model.network import ModelSpec, UNet, build_model
from unet_engine.model.preprocessing import PreprocessConfig
from unet_engine.timestamps import now_iso

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "card.json"
CARD_FORMAT = "segloop-model-card/1"
WEIGHTS_FORMAT = "segloop-unet/1"

DEFAULT_COLOURS: dict[int, list[int]] = {
    1: [230, 25, 75], 2: [60, 180, 75], 3: [255, 225, 25], 4: [0, 130, 200], 5: [245, 130, 48],
    6: [145, 30, 180], 7: [70, 240, 240], 8: [240, 50, 230], 9: [210, 245, 60], 10: [250, 190, 212],
}  # fmt: skip


@dataclass
class ModelCard:
    """Everything needed to use a checkpoint's weights correctly, stored as ``card.json``."""

    spec: ModelSpec
    preprocessing: dict[str, Any] = field(default_factory=lambda: PreprocessConfig().to_dict())
    labels: dict[int, str] = field(default_factory=lambda: {0: "background"})
    colours: dict[int, list[int]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = "0"
    parent: str | None = None
    created: str = field(default_factory=now_iso)
    name: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        self.labels = {int(k): str(v) for k, v in self.labels.items()}
        self.colours = {int(k): [int(c) for c in v] for k, v in self.colours.items()}
        if isinstance(self.preprocessing, PreprocessConfig):
            self.preprocessing = self.preprocessing.to_dict()

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocessing)

    def colour(self, label: int) -> list[int]:
        """RGB colour of ``label`` (the card's, else a default palette)."""
        return self.colours.get(label) or DEFAULT_COLOURS.get((label - 1) % 10 + 1, [255, 255, 255])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "name": self.name,
            "version": self.version,
            "parent": self.parent,
            "created": self.created,
            "spec": self.spec.to_dict(),
            "preprocessing": dict(self.preprocessing),
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "colours": {str(k): list(v) for k, v in sorted(self.colours.items())},
            "training": self.training,
            "metrics": self.metrics,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        """Parse a card dict; raises ``ValueError`` / ``KeyError`` / ``TypeError`` when invalid."""
        if not isinstance(data, dict):
            raise TypeError("the card is not a JSON object")
        fmt = data.get("format", CARD_FORMAT)
        if not str(fmt).startswith("segloop-model-card/"):
            raise ValueError(f"unknown card format {fmt!r}")
        spec = ModelSpec.from_dict(data["spec"])
        PreprocessConfig.from_dict(data.get("preprocessing"))  # validate now, not at inference
        return cls(
            spec=spec,
            preprocessing=dict(data.get("preprocessing") or {}),
            labels=dict(data.get("labels") or {0: "background"}),
            colours=dict(data.get("colours") or {}),
            training=dict(data.get("training") or {}),
            metrics=dict(data.get("metrics") or {}),
            version=str(data.get("version", "0")),
            parent=data.get("parent"),
            created=str(data.get("created", "")),
            name=str(data.get("name", "")),
            notes=str(data.get("notes", "")),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except RecursionError as exc:
            raise ValueError("the card is nested too deeply") from exc
        return cls.from_dict(data)


# ----- paths and interrupted swaps -----------------------------------------------------------


def _folder_of(path: str | Path) -> Path:
    """The checkpoint folder for a folder path or a path to either of its files."""
    p = Path(path).expanduser()
    if p.name in (WEIGHTS_NAME, CARD_NAME) and not p.is_dir():
        return p.parent
    if p.suffix == ".safetensors" and p.is_file():
        return p.parent
    return p


def _backups(folder: Path) -> list[Path]:
    if not folder.parent.is_dir():
        return []
    return sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)


def _recover_interrupted_swap(folder: Path) -> None:
    """If a swap died between its two renames, put the previous checkpoint back."""
    if folder.exists():
        return
    for backup in _backups(folder):
        if (backup / WEIGHTS_NAME).is_file() and (backup / CARD_NAME).is_file():
            log.warning("restoring %s from interrupted save %s", folder, backup.name)
            with contextlib.suppress(OSError):
                os.rename(backup, folder)
                return


# ----- save ------------------------------------------------------------------------------------


def _check_state_matches(state: dict[str, torch.Tensor], spec: ModelSpec, where: str | Path) -> None:
    """Raise CheckpointError unless ``state`` has exactly the tensors of ``UNet(spec)``."""
    reference = {k: tuple(v.shape) for k, v in UNet(spec).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(reference) - set(got))
    unexpected = sorted(set(got) - set(reference))
    wrong = sorted(k for k in set(reference) & set(got) if reference[k] != got[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensor(s) of the wrong shape (e.g. {k}: {got[k]} vs {reference[k]} in the card's spec)")
        raise CheckpointError("weights do not match the model card's architecture: " + "; ".join(parts), where)


def save_checkpoint(model: nn.Module, card: ModelCard, folder: str | Path) -> Path:
    """Write ``model``'s weights and ``card`` to ``folder`` atomically; returns the folder.

    Refuses to replace an existing folder that is not a SegLoop checkpoint; replacing one
    keeps its other files (notes such as ``TRAINING.md``).
    """
    folder = Path(folder).expanduser().absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_swap(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / CARD_NAME).exists())):
        raise CheckpointError("exists and is not a SegLoop checkpoint folder; refusing to replace it", folder)
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec) and spec != card.spec:
        raise CheckpointError(f"model architecture {spec} differs from the card's spec {card.spec}", folder)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _check_state_matches(state, card.spec, folder)
    metadata = {"format": WEIGHTS_FORMAT, "spec": json.dumps(card.spec.to_dict(), sort_keys=True)}

    from safetensors.torch import save_file

    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata=metadata)
        (tmp / CARD_NAME).write_text(card.to_json(), encoding="utf-8")
        if folder.is_dir():  # keep the old folder's other files (e.g. a TRAINING.md)
            for extra in folder.iterdir():
                if extra.name not in (WEIGHTS_NAME, CARD_NAME) and extra.is_file():
                    shutil.copy2(extra, tmp / extra.name)
        for name in (WEIGHTS_NAME, CARD_NAME):
            with open(tmp / name, "rb+") as fh:
                os.fsync(fh.fileno())
        fsync_path(tmp)
        if not folder.exists():
            os.rename(tmp, folder)
        else:
            backup = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, backup)
            try:
                os.rename(tmp, folder)
            except OSError:
                os.rename(backup, folder)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        fsync_path(folder.parent)
    except OSError as exc:
        raise CheckpointError(f"could not write the checkpoint: {exc}", folder) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved checkpoint %s", folder)
    return folder


# ----- load -------------------------------------------------------------------------------------


def load_card(path: str | Path) -> ModelCard:
    """Read the :class:`ModelCard` of a checkpoint (folder, ``card.json`` or ``model.safetensors``)."""
    folder = _folder_of(path)
    card_path = Path(path) if Path(path).name == CARD_NAME and Path(path).exists() else folder / CARD_NAME
    if not card_path.exists():
        _recover_interrupted_swap(folder)
    if not folder.exists():
        raise CheckpointError("no such checkpoint (expected a folder with model.safetensors and card.json)", folder)
    if not card_path.exists():
        raise CheckpointError(f"the checkpoint has no {CARD_NAME} model card", folder)
    # untrusted input: a regular file of sane size, sane nesting, bounds checked before building
    text = read_card_text(card_path)
    try:
        data = parse_card_json(text, card_path)
        check_card_dict(data, card_path)
        return ModelCard.from_dict(data)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the model card is not valid JSON (line {exc.lineno}: {exc.msg})", card_path) from exc
    except KeyError as exc:
        raise CheckpointError(f"the model card lacks the field {exc}", card_path) from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"the model card is invalid: {exc}", card_path) from exc


#: safetensors' deserialisation errors -> what the user reads.
_SAFETENSORS_ERRORS = (
    ("header too small", "file is truncated (not a safetensors file)"),
    ("incomplete metadata", "file is truncated (its tensors need more bytes than the file has)"),
    ("invalid header length", "not a safetensors file, or truncated (invalid header length)"),
    ("header too large", "not a safetensors file (invalid header length)"),
    ("invalid json", "corrupted safetensors header (invalid JSON)"),
    ("invalid utf", "corrupted safetensors header (not UTF-8)"),
)


def _refuse_pickle(path: Path) -> None:
    """A torch.save file (zip or raw pickle) gets its own message: SegLoop never unpickles."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        raise CheckpointError(
            "this is a pickle (torch.save) file, not safetensors; SegLoop never unpickles model files. "
            "Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors') where you trust its origin",
            path,
        )


def _safetensors_message(exc: BaseException) -> str:
    text = str(exc)
    low = text.lower()
    for key, message in _SAFETENSORS_ERRORS:
        if key in low:
            return message
    return f"corrupted safetensors file ({text})"


def read_weights(path: str | Path, max_bytes: int = MAX_WEIGHTS_BYTES) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on CPU) and metadata of a safetensors file, never unpickling anything.

    Only a regular file (links followed) of at most ``max_bytes`` is read: a named pipe or
    a device such as ``/dev/zero`` is refused before opening it. The framing, header and
    metadata are read by safetensors itself (``safe_open``); its errors become one line."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError("the checkpoint has no model.safetensors weights file", path)
    check_regular_file(path, max_bytes, "weights file")
    try:
        _refuse_pickle(path)
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except FileNotFoundError as exc:
        raise CheckpointError("the checkpoint has no model.safetensors weights file", path) from exc
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(_safetensors_message(exc), path) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read the weights: {exc}", path) from exc
    return tensors, {str(k): str(v) for k, v in meta.items()}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load a checkpoint (folder or either file) as ``(model in eval mode on device, card)``."""
    folder = _folder_of(path)
    card = load_card(folder if Path(path).suffix != ".json" else path)
    p = Path(path)
    weights_path = p if (p.suffix == ".safetensors" and p.is_file()) else folder / WEIGHTS_NAME
    try:
        limit = max_weights_bytes(check_spec(card.spec.to_dict()))
    except ValueError as exc:  # a card built in code, not read from card.json
        raise CheckpointError(f"the model card is invalid: {exc}", folder) from exc
    state, meta = read_weights(weights_path, limit)
    fmt = meta.get("format")
    if fmt is not None and not fmt.startswith("segloop-unet/"):
        raise CheckpointError(f"weights of an unknown format {fmt!r} (not a SegLoop U-Net)", weights_path)
    if "spec" in meta:
        try:
            weights_spec = ModelSpec.from_dict(json.loads(meta["spec"]))
        except (ValueError, TypeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"corrupted architecture metadata ({exc})", weights_path) from exc
        if weights_spec != card.spec:
            raise CheckpointError(
                f"card.json describes {card.spec} but the weights were saved for {weights_spec} (wrong card for these weights?)",
                folder,
            )
    _check_state_matches(state, card.spec, weights_path)
    model = build_model(card.spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - _check_state_matches catches these first
        raise CheckpointError(f"weights do not fit the model: {exc}", weights_path) from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"weights contain NaN/Inf values (e.g. {bad[0]})", weights_path)
    model.to(torch.device(device)).eval()
    return model, card
