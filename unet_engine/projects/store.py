"""The projects of a user: ``SEGLOOP_HOME/projects/<name>/``, created, listed and deleted safely.

* **Create** builds the whole project (``project.json``, an empty dataset, a registry, an
  imported start model) in a hidden ``.tmp-*`` folder and renames it to its name at the
  end: a process killed during creation leaves no half project, only a temp folder that
  the next :class:`ProjectStore` removes.
* **Delete** moves the folder into ``.trash/`` (nothing is erased); it refuses the project
  open in the app and a project whose dataset or registry is busy (a training run).
* Names are folder names (:mod:`unet_engine.projects.names`), unique without case.
* The store's own lock (``projects/.segloop.lock``) serialises creation, deletion and
  migration between processes.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_engine.io.atomic import fsync_path
from unet_engine.data.lock import FolderLock
from unet_engine.errors import ProjectError, SegLoopError
from unet_engine.paths import segloop_home
from unet_engine.projects.names import check_project_name, name_key
from unet_engine.projects.project import (
    BUNDLED_START,
    DATASET_DIR,
    LabelSchema,
    Project,
    dataset_modality,
    load_project,
    make_labels,
    normalize_modality,
    now_iso,
)

if TYPE_CHECKING:
    from unet_engine.model.checkpoint import ModelCard

log = logging.getLogger(__name__)

TRASH_DIR = ".trash"
_TMP_PREFIX = ".tmp-"

#: Called with a step name as creation proceeds (tests kill the process at a step).
StepHook = Callable[[str], None]


def default_projects_root() -> Path:
    return segloop_home() / "projects"


@dataclass
class ProjectEntry:
    """A folder of the store: its project, or why it cannot be opened."""

    name: str
    folder: Path
    project: Project | None
    error: str | None = None


class ProjectStore:
    """All projects under ``root`` (default ``SEGLOOP_HOME/projects``)."""

    def __init__(self, root: str | Path | None = None, *, lock_timeout: float = 10.0) -> None:
        self.root = Path(root) if root is not None else default_projects_root()
        self.lock = FolderLock(self.root, timeout=lock_timeout, what="the project list", error_cls=ProjectError)
        self._remove_incomplete()

    # ----- reading ------------------------------------------------------------------------
    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: name_key(p.name))

    def entries(self) -> list[ProjectEntry]:
        """Every project folder, readable or not (an unreadable one carries its error)."""
        out = []
        for folder in self._folders():
            try:
                out.append(ProjectEntry(folder.name, folder, load_project(folder)))
            except SegLoopError as exc:
                out.append(ProjectEntry(folder.name, folder, None, str(exc)))
        return out

    def list(self) -> list[Project]:
        """The readable projects, sorted by name."""
        return [e.project for e in self.entries() if e.project is not None]

    def names(self) -> builtins.list[str]:  # builtins.: `list` in this class body is the method above
        return [f.name for f in self._folders()]

    def find(self, name: str) -> Path | None:
        """The folder of the project called ``name`` (ignoring case), or None."""
        key = name_key(str(name))
        return next((f for f in self._folders() if name_key(f.name) == key), None)

    def exists(self, name: str) -> bool:
        return self.find(name) is not None

    def open(self, name: str) -> Project:
        """The project called ``name``; ProjectError listing the projects when there is none."""
        folder = self.find(name)
        if folder is None:
            known = ", ".join(repr(n) for n in self.names()) or "none yet (segloop project create ...)"
            raise ProjectError(f"no project named {name!r}; projects: {known}", self.root)
        return load_project(folder)

    # ----- creating -------------------------------------------------------------------------
    def create(self, name: str, *, modality: str, labels: Any = None, colours: dict[int, Any] | None = None,
               start_model: str | Path | None = None, description: str = "", val_fraction: float = 0.2,
               on_step: StepHook | None = None) -> Project:
        """Create a project; returns it.

        ``labels``: ``{value: name}`` or ``[(value, name[, colour])]``; may be omitted when
        starting from a model (its card's labels are taken). ``start_model``: None (empty:
        the first model is planned and trained once cases are added), ``"default"`` (the
        model bundled with SegLoop) or a checkpoint folder, copied into the project's registry
        as its first, active version. Labels given with a model must agree with the model's:
        the same name for every value the model predicts (extra labels are allowed: the
        network gains outputs for them at the next fine-tune).
        """
        from unet_engine.data.dataset import RetrainingDataset

        hook = on_step or (lambda _step: None)
        name = check_project_name(name)
        modality = normalize_modality(modality)
        card, source = _start_card(start_model)
        if labels is None:
            if card is None:
                raise ProjectError("a project needs labels (e.g. 1=spleen) when it does not start from a model")
            labels = {k: v for k, v in card.labels.items() if k != 0}
            colours = {**{k: v for k, v in card.colours.items()}, **(colours or {})}
        table = make_labels(labels, colours)
        if card is not None:
            check_model_labels({x.value: x.name for x in table}, card, source)
        with self.lock.hold():
            existing = self.find(name)
            if existing is not None:
                raise ProjectError(f"a project named {existing.name!r} already exists; choose another name",
                                   self.root)
            tmp = self.root / f"{_TMP_PREFIX}{uuid.uuid4().hex[:12]}"
            tmp.mkdir(parents=True)
            try:
                project = Project(folder=tmp, name=name, modality=modality,
                                  schemas=[LabelSchema(1, table, now_iso(), "created")],
                                  start_model=BUNDLED_START if source == "default" else None,
                                  description=description, created=now_iso())
                project.save()
                hook("project.json")
                RetrainingDataset.create(tmp / DATASET_DIR, project.labels, name=name,
                                         modality=dataset_modality(modality), val_fraction=val_fraction)
                hook("dataset")
                if source not in (None, "default"):
                    project.registry().import_checkpoint(source, source="import", promote=True,
                                                         notes=f"start model of project {name!r}")
                    hook("model")
                final = self.root / name
                os.rename(tmp, final)
                fsync_path(self.root)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        hook("done")
        log.info("created project %s (%s) in %s", name, modality, final)
        return load_project(final)

    # ----- deleting -------------------------------------------------------------------------
    def delete(self, name: str, *, open_project: str | None = None) -> Path:
        """Move the project into ``.trash/``; returns where it went.

        Refused for ``open_project`` (the project open in the app) and while its dataset or
        registry is locked by another process (e.g. a training run).
        """
        folder = self.find(name)
        if folder is None:
            self.open(name)  # raises the "no project named" error
        assert folder is not None
        if open_project is not None and name_key(open_project) == name_key(folder.name):
            raise ProjectError(f"project {folder.name!r} is open; switch to another project before deleting it",
                               folder)
        with self.lock.hold():
            for sub, what in ((folder / DATASET_DIR, "its dataset"), (folder / "models", "its model registry")):
                lock = FolderLock(sub, timeout=0, what=f"{what}", error_cls=ProjectError)
                if sub.is_dir():
                    with lock.hold(timeout=0):
                        pass
            trash = self.root / TRASH_DIR
            trash.mkdir(parents=True, exist_ok=True)
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            target = trash / f"{folder.name} {stamp}"
            n = 2
            while target.exists():
                target = trash / f"{folder.name} {stamp}-{n}"
                n += 1
            os.rename(folder, target)
            fsync_path(self.root)
        log.info("moved project %s to %s", folder.name, target)
        return target

    # ----- housekeeping ----------------------------------------------------------------------
    def _remove_incomplete(self) -> None:
        """Remove temp folders of creations that were killed (only when no other process is
        creating: the store lock is free)."""
        if not self.root.is_dir() or not any(p.name.startswith(_TMP_PREFIX) for p in self.root.iterdir()):
            return
        try:
            with self.lock.hold(timeout=0):
                for p in self.root.glob(f"{_TMP_PREFIX}*"):
                    shutil.rmtree(p, ignore_errors=True)
                    log.info("removed an incomplete project creation: %s", p.name)
        except ProjectError:
            pass  # another process is creating a project: its temp folder is live


def _start_card(start_model: str | Path | None) -> tuple[ModelCard | None, str | Path | None]:
    """``(card, source)`` of a start model: source None (empty), "default" or the checkpoint folder."""
    if start_model is None or str(start_model).strip() in ("", "empty", "none"):
        return None, None
    from unet_engine.model.checkpoint import load_card
    from unet_engine.paths import BUNDLED_MODELS

    if str(start_model).strip().lower() in ("default", "bundled", BUNDLED_START):
        folder = BUNDLED_MODELS / "default"
        if not (folder / "card.json").is_file():
            raise ProjectError("the bundled default model is missing from this installation", folder)
        return load_card(folder), "default"
    from unet_engine.registry.resolver import resolve_model_path

    folder = resolve_model_path(str(start_model))
    if folder.is_file():
        folder = folder.parent
    return load_card(folder), folder


def check_model_labels(labels: dict[int, str], card: Any, source: Any) -> None:
    """Refuse project labels that contradict a model's: every value the model predicts must be a
    project label of the same name (extra project labels are fine; see :meth:`ProjectStore.create`)."""
    problems = []
    for value, model_name in sorted(card.labels.items()):
        if value == 0:
            continue
        if value not in labels:
            problems.append(f"the model predicts label {value} {model_name!r}, which the project's labels lack")
        elif labels[value].casefold() != str(model_name).casefold():
            problems.append(f"the model calls label {value} {model_name!r}, not {labels[value]!r}")
    if problems:
        where = "the bundled default model" if source == "default" else str(source)
        raise ProjectError("; ".join(problems) + f" ({where}). Use the model's label names, or start the project empty")
