"""The model registry: every fine-tune is a new, immutable version with its lineage.

Layout under ``root`` (default ``segloop_home()/"models"``)::

    active.json              {"active": "v0003", "stack": [...], "history": [...], "last_number": 3}
    versions/v0003/          a checkpoint folder (model.safetensors + card.json) ...
               version.json  ... plus parent, dataset snapshot, train config, metrics, curves
    training/<key>/          resumable training states (see unet_engine.training.fine_tune)
    .segloop.lock            inter-process write lock

Crash safety (kill -9 at any instant leaves the previous active model loadable):

* a version is written completely into ``versions/.tmp-<random>/`` and then renamed to
  its final name, so ``versions/vNNNN`` either exists complete or not at all; stray
  ``.tmp-*`` folders are ignored and removed by the next write;
* ``active.json`` is replaced atomically (temp file + fsync + rename); promotion and
  rollback only ever change that one file;
* deletion renames the folder to ``.trash-*`` before removing it, and never touches the
  active version.

``stack`` is the promotion history used by :meth:`ModelRegistry.rollback` (the active
version is its last entry); ``history`` is an append-only log of promote/rollback events.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from unet_engine.io.atomic import atomic_write_json, fsync_path
from unet_engine.model.checkpoint import CARD_NAME, WEIGHTS_NAME, ModelCard, load_card, load_checkpoint, save_checkpoint
from unet_engine.data.lock import FolderLock
from unet_engine.errors import CheckpointError, RegistryError
from unet_engine.paths import BUNDLED_MODELS, segloop_home
from unet_engine.timestamps import now_iso

log = logging.getLogger(__name__)

VERSION_FILE = "version.json"
ACTIVE_FILE = "active.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def default_registry_root() -> Path:
    return segloop_home() / "models"


@dataclass
class VersionInfo:
    """One registry version (the parsed ``version.json`` plus where it lives)."""

    version: str
    path: Path
    parent: str | None = None
    created: str = ""
    name: str = ""
    notes: str = ""
    source: str = "fine-tune"  # "fine-tune", "scratch" (a first model), "import" or "bundled-default"
    dataset: dict[str, Any] = field(default_factory=dict)  # {"folder", "name", "cases": [{id, hash, split}]}
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # {"val_dice": {label: d}, "val_mean_dice": d, ...}
    curves: dict[str, Any] = field(default_factory=dict)  # {"epoch": [...], "train_loss": [...], ...}
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "parent": self.parent, "created": self.created, "name": self.name,
            "notes": self.notes, "source": self.source, "dataset": self.dataset, "config": self.config,
            "metrics": self.metrics, "curves": self.curves,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path, active: bool = False) -> "VersionInfo":
        return cls(
            version=str(d["version"]), path=path, parent=d.get("parent"), created=str(d.get("created", "")),
            name=str(d.get("name", "")), notes=str(d.get("notes", "")), source=str(d.get("source", "fine-tune")),
            dataset=dict(d.get("dataset") or {}), config=dict(d.get("config") or {}),
            metrics=dict(d.get("metrics") or {}), curves=dict(d.get("curves") or {}), active=active,
        )


class ModelRegistry:
    """Versions, the active pointer, promotion history (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, *, lock_timeout: float = 30.0) -> None:
        self.root = Path(root) if root is not None else default_registry_root()
        self.versions_dir = self.root / "versions"
        self.active_file = self.root / ACTIVE_FILE
        self._lock = FolderLock(self.root, timeout=lock_timeout, what="the model registry", error_cls=RegistryError)

    # ----- state ----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.active_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            log.warning("unreadable %s (%s); treating the registry as having no active model", self.active_file, exc)
            data = {}
        data.setdefault("active", None)
        data.setdefault("stack", [data["active"]] if data["active"] else [])
        data.setdefault("history", [])
        data.setdefault("last_number", 0)
        return data

    def _write_state(self, state: dict[str, Any]) -> None:
        state["active"] = state["stack"][-1] if state["stack"] else None
        atomic_write_json(self.active_file, state)

    def _dir(self, version: str) -> Path:
        return self.versions_dir / version

    def exists(self, version: str) -> bool:
        d = self._dir(version)
        return bool(_VERSION_RE.match(version)) and (d / WEIGHTS_NAME).is_file() and (d / CARD_NAME).is_file()

    @property
    def active(self) -> str | None:
        """The active version id (None when no version was promoted)."""
        a = self._state()["active"]
        return a if a and self.exists(a) else None

    def active_checkpoint_path(self) -> Path | None:
        """Folder of the active version's checkpoint, or None."""
        a = self.active
        return self._dir(a) if a else None

    def history(self) -> list[dict[str, Any]]:
        return list(self._state()["history"])

    # ----- reading versions ------------------------------------------------------------------
    def _info(self, version: str, active: str | None) -> VersionInfo:
        d = self._dir(version)
        try:
            data = json.loads((d / VERSION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            card = load_card(d)  # a checkpoint folder without version.json: describe it from its card
            data = {"version": version, "parent": card.parent, "created": card.created, "name": card.name,
                    "notes": card.notes, "source": "import", "metrics": card.metrics}
        data["version"] = version
        return VersionInfo.from_dict(data, d, active=(version == active))

    def list(self) -> list[VersionInfo]:
        """All complete versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        active = self.active
        out = []
        for p in self.versions_dir.iterdir():
            if p.is_dir() and _VERSION_RE.match(p.name) and self.exists(p.name):
                try:
                    out.append(self._info(p.name, active))
                except CheckpointError as exc:
                    log.warning("skipping unreadable version %s: %s", p.name, exc)
        return sorted(out, key=lambda v: int(v.version[1:]))

    def get(self, version: str) -> VersionInfo:
        version = self.resolve(version)
        return self._info(version, self.active)

    def resolve(self, version: str) -> str:
        """Accept ``v0003``, ``3``, ``active`` or ``latest``; raise RegistryError if unknown."""
        v = str(version).strip()
        if v == "active":
            if self.active is None:
                raise RegistryError("no version is active yet; promote one with `segloop models promote`", self.root)
            return self.active
        if v == "latest":
            versions = self.list()
            if not versions:
                raise RegistryError("the registry has no versions", self.root)
            return versions[-1].version
        if v.isdigit():
            v = f"v{int(v):04d}"
        if not self.exists(v):
            known = ", ".join(x.version for x in self.list()) or "none"
            raise RegistryError(f"no model version {version!r} (known: {known})", self.root)
        return v

    def load(self, version: str, device: str = "cpu") -> tuple[nn.Module, ModelCard]:
        return load_checkpoint(self._dir(self.resolve(version)), device)

    # ----- writing ---------------------------------------------------------------------------
    def _cleanup_tmp(self) -> None:
        if self.versions_dir.is_dir():
            for p in self.versions_dir.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
            for p in self.versions_dir.glob(".trash-*"):
                shutil.rmtree(p, ignore_errors=True)

    def _next_version(self, state: dict[str, Any]) -> str:
        numbers = [int(m.group(1)) for p in (self.versions_dir.iterdir() if self.versions_dir.is_dir() else [])
                   if (m := _VERSION_RE.match(p.name))]
        n = max([int(state.get("last_number", 0)), *numbers]) + 1
        state["last_number"] = n
        return f"v{n:04d}"

    def add_version(self, model: nn.Module, card: ModelCard, *, parent: str | None = None,
                    dataset: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None, curves: dict[str, Any] | None = None,
                    name: str = "", notes: str = "", source: str = "fine-tune", promote: bool = False) -> VersionInfo:
        """Store ``model`` + ``card`` as a new version (written to a temp folder, then renamed)."""
        with self._lock.hold():
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            self._cleanup_tmp()
            state = self._state()
            version = self._next_version(state)
            card = ModelCard.from_dict(card.to_dict())  # a copy we may edit
            card.version, card.parent, card.created = version, parent, now_iso()
            card.name = name or card.name or f"SegLoop {version}"
            if metrics:
                card.metrics = dict(metrics)
            if notes:
                card.notes = notes
            info = VersionInfo(version=version, path=self._dir(version), parent=parent, created=card.created,
                               name=card.name, notes=notes, source=source, dataset=dataset or {},
                               config=config or {}, metrics=metrics or card.metrics, curves=curves or {})
            tmp = self.versions_dir / f".tmp-{uuid.uuid4().hex[:12]}"
            try:
                save_checkpoint(model, card, tmp)
                atomic_write_json(tmp / VERSION_FILE, info.to_dict())
                os.rename(tmp, self._dir(version))  # the version appears complete, or not at all
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            fsync_path(self.versions_dir)
            if promote:
                state["stack"].append(version)
                state["history"].append({"action": "promote", "version": version, "time": now_iso()})
            self._write_state(state)
        log.info("registered model version %s (parent %s)", version, parent)
        return self.get(version)

    def import_checkpoint(self, path: str | Path, *, name: str = "", notes: str = "", source: str = "import",
                          promote: bool = False) -> VersionInfo:
        """Copy a checkpoint folder (e.g. the bundled default model) in as a new version."""
        model, card = load_checkpoint(path, "cpu")
        parent = card.parent if card.parent and self.exists(str(card.parent)) else None
        return self.add_version(model, card, parent=parent, name=name or card.name, notes=notes or card.notes,
                                metrics=card.metrics, source=source, promote=promote,
                                config={"imported_from": str(Path(path).resolve())})

    def ensure_default(self, bundled: str | Path | None = None) -> VersionInfo | None:
        """Import and promote the bundled default model when the registry is empty."""
        if self.list():
            return None
        src = Path(bundled) if bundled is not None else BUNDLED_MODELS / "default"
        if not (src / CARD_NAME).is_file():
            return None
        return self.import_checkpoint(src, source="bundled-default", promote=True)

    def promote(self, version: str) -> VersionInfo:
        """Make ``version`` the active model (pushes it on the promotion stack)."""
        with self._lock.hold():
            v = self.resolve(version)
            load_card(self._dir(v))  # refuse a version whose card cannot be read
            state = self._state()
            if state["active"] != v:
                state["stack"].append(v)
            state["history"].append({"action": "promote", "version": v, "time": now_iso()})
            self._write_state(state)
        return self.get(v)

    def rollback(self) -> VersionInfo:
        """Make the previously active version active again."""
        with self._lock.hold():
            state = self._state()
            stack = [v for v in state["stack"] if self.exists(v)]
            if len(stack) < 2:
                raise RegistryError("nothing to roll back to: no earlier promoted version", self.root)
            old = stack.pop()
            while len(stack) > 1 and stack[-1] == old:
                stack.pop()
            state["stack"] = stack
            state["history"].append({"action": "rollback", "version": stack[-1], "from": old, "time": now_iso()})
            self._write_state(state)
            return self._info(stack[-1], stack[-1])

    def delete(self, version: str) -> None:
        """Delete a version (never the active one)."""
        with self._lock.hold():
            v = self.resolve(version)
            if v == self.active:
                raise RegistryError(f"{v} is the active model; promote another version (or roll back) before deleting it",
                                    self.root)
            state = self._state()
            state["stack"] = [x for x in state["stack"] if x != v]
            state["history"].append({"action": "delete", "version": v, "time": now_iso()})
            trash = self.versions_dir / f".trash-{uuid.uuid4().hex[:12]}"
            os.rename(self._dir(v), trash)
            self._write_state(state)
            shutil.rmtree(trash, ignore_errors=True)

    def compare(self, a: str, b: str, *, rescore: Callable[[str], dict[str, Any]] | None = None) -> dict[str, Any]:
        """Metrics of two versions side by side; ``rescore(version)`` adds freshly measured
        metrics (e.g. :func:`unet_engine.training.validation.val_split_rescorer`)."""
        va, vb = self.get(a), self.get(b)
        ma, mb = dict(va.metrics), dict(vb.metrics)
        if rescore is not None:
            for info, target in ((va, ma), (vb, mb)):
                target.update(rescore(info.version))
        rows = []
        for key in sorted(set(_flat(ma)) | set(_flat(mb))):
            x, y = _flat(ma).get(key), _flat(mb).get(key)
            delta = (y - x) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else None
            rows.append({"metric": key, "a": x, "b": y, "delta": delta})
        return {"a": va.version, "b": vb.version, "rows": rows, "metrics_a": ma, "metrics_b": mb}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def active_checkpoint_path() -> Path | None:
    """The active model of the default registry (``segloop_home()/"models"``), or None.

    Never raises: a missing or unreadable registry means "no fine-tuned model".
    """
    try:
        return ModelRegistry().active_checkpoint_path()
    except Exception as exc:  # noqa: BLE001 - the resolver must always get an answer
        log.warning("could not read the model registry: %s", exc)
        return None
