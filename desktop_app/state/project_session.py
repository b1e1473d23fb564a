"""The open project, as the app sees it (no Qt): which project, which model, which dataset.

A :class:`ProjectSession` is made once by the app and passed to every controller that
touches the learning loop; nothing reaches a global dataset or registry. It answers:

* **which project** (:attr:`project`) and its store (:attr:`store`);
* **which model** inference uses (:meth:`model_path`): the ``--model PATH`` given on the
  command line until a version is promoted or another project is opened, else the
  project's own model (:meth:`unet_engine.projects.Project.model_path`: the active
  version, else the bundled model the project started from, else none yet);
  ``--model default`` means the project's model;
* **where a fine-tune starts** (:meth:`fine_tune_start`): the ``--model`` checkpoint when one
  drives inference, else :meth:`~unet_engine.projects.Project.start_version` (None: the
  project needs a first model, planned and trained from scratch);
* the dataset's case counts (:meth:`case_counts`, read from ``dataset.json``).

Events (psygnal), emitted on the GUI thread by whoever changed the thing:

* ``project_changed(project)``: another project was opened (or None: no project);
* ``labels_changed(project)``: the open project gained labels (a new schema version);
* ``dataset_changed()``: a case was added or replaced;
* ``registry_changed()``: a version was added, promoted, rolled back or deleted;
* ``model_changed()``: the model inference uses may be another one now (also implied by
  ``project_changed`` and ``registry_changed``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal

from unet_engine.errors import SegLoopError
from unet_engine.projects import FIRST_MODEL_MIN_CASES, Project, ProjectStore, load_project

log = logging.getLogger(__name__)

#: What ``--model`` may say to mean "the project's own model".
DEFAULT_MODEL_WORDS = ("", "default")


@dataclass(frozen=True)
class CaseCounts:
    """Cases of the project's dataset, by split."""

    total: int = 0
    train: int = 0
    val: int = 0


class ProjectSession:
    """The open project and the model choice (see the module docstring)."""

    project_changed = Signal(object)
    labels_changed = Signal(object)
    dataset_changed = Signal()
    registry_changed = Signal()
    model_changed = Signal()

    def __init__(self, store: ProjectStore) -> None:
        self.store = store
        self.project: Project | None = None
        self.requested_model: str | None = None
        self._registry: Any = None

    # ----- the project ----------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self.project.name if self.project is not None else None

    def open(self, project: Project | None) -> None:
        """Make ``project`` the open one (the ``--model`` choice is dropped: it was for the
        project open when it was given)."""
        self.project = project
        self.requested_model = None
        self._registry = None
        self.project_changed.emit(project)  # implies a model change too

    def reload(self) -> Project | None:
        """Read the open project's ``project.json`` again (after a label-schema change) and
        announce its labels."""
        if self.project is None:
            return None
        self.project = load_project(self.project.folder)
        self.labels_changed.emit(self.project)
        return self.project

    def require(self) -> Project:
        if self.project is None:
            raise SegLoopError("no project is open; create one with File > New project")
        return self.project

    @property
    def dataset_folder(self) -> Path | None:
        return self.project.dataset_folder if self.project is not None else None

    @property
    def registry(self) -> Any:
        """The open project's :class:`~unet_engine.registry.versions.ModelRegistry` (None: no project)."""
        if self.project is None:
            return None
        if self._registry is None or Path(self._registry.root) != self.project.registry_root:
            self._registry = self.project.registry()
        return self._registry

    def dataset(self) -> Any:
        """The project's :class:`~unet_engine.data.dataset.RetrainingDataset` (None without a project)."""
        return self.project.dataset() if self.project is not None else None

    def case_counts(self) -> CaseCounts:
        """Cases in the project's dataset, read from its ``dataset.json`` alone (no lock, no
        folder scan: the panels ask after every change); zeros when there is none or it is
        unreadable."""
        folder = self.dataset_folder
        if folder is None:
            return CaseCounts()
        try:
            cases = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["training"]
            splits = [str(c.get("split", "train")) for c in cases]
        except FileNotFoundError:
            return CaseCounts()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("cannot read the dataset of project %s: %s", self.name, exc)
            return CaseCounts()
        return CaseCounts(len(splits), splits.count("train"), splits.count("val"))

    # ----- the model ------------------------------------------------------------------------
    def request_model(self, model: str | None) -> None:
        """``--model``: a checkpoint path overrides the project's model until a version is
        promoted; ``"default"`` (or None) is the project's own model."""
        text = (model or "").strip()
        self.requested_model = None if text.lower() in DEFAULT_MODEL_WORDS else text
        self.model_changed.emit()

    def clear_requested_model(self) -> None:
        """A version was promoted or rolled back: the project's active version drives inference."""
        self.requested_model = None
        self.model_changed.emit()

    def requested_path(self) -> Path | None:
        """The ``--model`` checkpoint folder, when one is given and readable."""
        if self.requested_model is None:
            return None
        from unet_engine.errors import CheckpointError
        from unet_engine.registry.resolver import resolve_model_path

        try:
            return resolve_model_path(self.requested_model)
        except CheckpointError:
            return None

    def model_path(self) -> Path | None:
        """The checkpoint folder inference uses now (None: no model)."""
        if self.requested_model is not None:
            return self.requested_path()
        return self.project.model_path() if self.project is not None else None

    def fine_tune_settings(self) -> dict[str, Any]:
        """TrainConfig fields a fine-tune of :meth:`model_path` takes from the project's plan
        (patch, batch, augmentation, per-case rate; {} without a plan or for another network)."""
        if self.project is None:
            return {}
        from unet_engine.errors import SegLoopError
        from unet_engine.planning import finetune_settings

        try:
            plan = self.project.plan
        except SegLoopError:
            return {}
        return finetune_settings(plan, self.model_path())

    def model_source(self) -> str:
        """Where :meth:`model_path` comes from: "--model", "active version", "bundled start" or ""."""
        if self.requested_model is not None:
            return "--model"
        if self.project is None:
            return ""
        reg = self.registry
        if reg is not None and reg.active is not None:
            return "active version"
        return "bundled start" if self.project.bundled_start_path() is not None else ""

    def version_of(self, path: Path | None) -> str | None:
        """Registry version id of a checkpoint folder, "bundled-default", or the folder name."""
        if path is None:
            return None
        p = Path(path).resolve()
        reg = self.registry
        if reg is not None and p.parent == reg.versions_dir.resolve():
            return p.name
        if "models" in p.parts and p.name == "default":
            return "bundled-default"
        return p.name

    def needs_first_model(self) -> bool:
        """True when the project has no model to start a fine-tune from (and no ``--model``)."""
        return self.project is not None and self.requested_model is None and self.project.start_version() is None

    def cases_needed(self, counts: CaseCounts | None = None) -> int:
        """Corrected cases still missing before the first model can be trained."""
        counts = counts if counts is not None else self.case_counts()
        return max(0, FIRST_MODEL_MIN_CASES - counts.total)

    def fine_tune_start(self) -> str | None:
        """``from_version`` for a fine-tune: a registry version, ``"default"`` (the bundled model
        the project started from), a checkpoint folder (``--model``), or None: no model yet."""
        if self.requested_model is not None:
            path = self.requested_path()
            if path is None:
                return None
            reg = self.registry
            if reg is not None and path.resolve().parent == reg.versions_dir.resolve():
                return path.name
            return str(path)
        return self.project.start_version() if self.project is not None else None
