"""A project: one structure to segment, with its own labels, dataset, model lineage and plan.

Layout of ``SEGLOOP_HOME/projects/<name>/``::

    project.json        name, modality, label schemas (versioned), start model, settings
    dataset/            the retraining dataset (:class:`~unet_engine.data.dataset.RetrainingDataset`)
    models/             the model registry (:class:`~unet_engine.registry.versions.ModelRegistry`)
    plan.json           the training plan of the first model (written when it is planned)
    effort_log.json     correction effort per added case (the app's chart)

Every path in ``project.json`` is relative to the project folder, so a project folder
copied to another machine opens there unchanged; an absolute path or one leaving the
folder is refused. Nothing is shared between projects.

Label schemas are versioned: adding a label makes a new schema version and keeps the
earlier ones in ``label_schemas``, so models and cases made under an older schema keep
their meaning (label values are never renumbered or renamed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from unet_engine.io.atomic import atomic_write_json
from unet_engine.model.checkpoint import DEFAULT_COLOURS, CARD_NAME
from unet_engine.errors import DatasetError, ProjectError
from unet_engine.modality import MODALITIES  # noqa: F401 (re-exported)
from unet_engine.timestamps import now_iso  # noqa: F401 (re-exported)
from unet_engine.modality import normalize_modality as _normalize_modality
from unet_engine.paths import BUNDLED_MODELS
from unet_engine.volume import int3

if TYPE_CHECKING:  # imported where used: they pull in torch
    from unet_engine.data.dataset import RetrainingDataset
    from unet_engine.registry.versions import ModelRegistry

log = logging.getLogger(__name__)

FORMAT = "segloop-project"
FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
DATASET_DIR = "dataset"
REGISTRY_DIR = "models"
PLAN_FILE = "plan.json"
EFFORT_FILE = "effort_log.json"
#: ``start_model`` of a project started from the model bundled with SegLoop (not copied: it ships with the app).
BUNDLED_START = "bundled:default"
MAX_LABEL_VALUE = 65535  # label maps are stored as uint8 or uint16
#: Corrected cases a project needs before its first model can be trained (2 to train on, 1 to validate).
FIRST_MODEL_MIN_CASES = 3


def normalize_modality(text: str) -> str:
    """``"mri"`` -> ``"MR"``, ``"ct"`` -> ``"CT"``...; ProjectError for anything else."""
    return _normalize_modality(text, error=ProjectError)


def dataset_modality(modality: str) -> str:
    """The modality string a project's dataset.json carries (MSD convention: "MRI" for MR)."""
    return "MRI" if modality == "MR" else modality


@dataclass(frozen=True)
class ProjectLabel:
    """One label of a project: voxel value, name, display colour (RGB)."""

    value: int
    name: str
    colour: tuple[int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "name": self.name, "colour": list(self.colour)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProjectLabel":
        return cls(int(d["value"]), str(d["name"]), _rgb(d.get("colour"), int(d["value"])))


def _rgb(colour: Any, value: int) -> tuple[int, int, int]:
    if colour is None:
        return int3(DEFAULT_COLOURS[(value - 1) % 10 + 1])
    c = [int(x) for x in colour][:3]
    if len(c) != 3 or not all(0 <= x <= 255 for x in c):
        raise ProjectError(f"label {value}: colour must be three values 0..255, got {colour!r}")
    return (c[0], c[1], c[2])


def make_labels(labels: Any, colours: dict[int, Any] | None = None) -> tuple[ProjectLabel, ...]:
    """Validated labels from ``{value: name}``, ``[ProjectLabel]`` or ``[(value, name[, colour])]``.

    Values are integers 1..65535, each once; names are non-empty and distinct (ignoring case).
    """
    colours = colours or {}
    items: list[ProjectLabel] = []
    if isinstance(labels, dict):
        raw = [(k, v, None) for k, v in labels.items()]
    else:
        raw = [(x.value, x.name, x.colour) if isinstance(x, ProjectLabel) else (tuple(x) + (None,))[:3] for x in labels]
    for value, name, colour in raw:
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise ProjectError(f"label value {value!r} is not a whole number") from None
        if v == 0:
            continue  # background is implicit
        if not 1 <= v <= MAX_LABEL_VALUE:
            raise ProjectError(f"label value {v} is out of range 1..{MAX_LABEL_VALUE}")
        text = str(name).strip()
        if not text:
            raise ProjectError(f"label {v} has no name")
        items.append(ProjectLabel(v, text, _rgb(colour if colour is not None else colours.get(v), v)))
    if not items:
        raise ProjectError("a project needs at least one label (e.g. 1=spleen)")
    values = [x.value for x in items]
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ProjectError(f"label value(s) {dup} given more than once")
    names = [x.name.casefold() for x in items]
    dup_names = sorted({x.name for x in items if names.count(x.name.casefold()) > 1})
    if dup_names:
        raise ProjectError(f"label name(s) {dup_names} given to more than one value")
    return tuple(sorted(items, key=lambda x: x.value))


@dataclass(frozen=True)
class LabelSchema:
    """One version of a project's label set."""

    version: int
    labels: tuple[ProjectLabel, ...]
    created: str
    change: str = "created"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "created": self.created, "change": self.change,
                "labels": [x.to_dict() for x in self.labels]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelSchema":
        return cls(int(d["version"]), make_labels([ProjectLabel.from_dict(x) for x in d["labels"]]),
                   str(d.get("created", "")), str(d.get("change", "")))


@dataclass
class Project:
    """A project folder and its ``project.json`` (see the module docstring)."""

    folder: Path
    name: str
    modality: str
    schemas: list[LabelSchema]
    start_model: str | None = None  # BUNDLED_START or None (an imported model lives in the registry)
    description: str = ""
    created: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    # ----- labels ----------------------------------------------------------------------------
    @property
    def schema(self) -> LabelSchema:
        return self.schemas[-1]

    @property
    def schema_version(self) -> int:
        return self.schema.version

    @property
    def label_list(self) -> tuple[ProjectLabel, ...]:
        return self.schema.labels

    @property
    def labels(self) -> dict[int, str]:
        """Current foreground labels: value -> name."""
        return {x.value: x.name for x in self.schema.labels}

    @property
    def colours(self) -> dict[int, tuple[int, int, int]]:
        return {x.value: x.colour for x in self.schema.labels}

    def unknown_values(self, values: Any) -> list[int]:
        """Label values (e.g. of a mask) that are not labels of this project (0 excluded)."""
        known = set(self.labels) | {0}
        return sorted(int(v) for v in set(int(v) for v in values) if int(v) not in known)

    # ----- where things live -------------------------------------------------------------------
    @property
    def project_file(self) -> Path:
        return self.folder / PROJECT_FILE

    @property
    def dataset_folder(self) -> Path:
        return self.folder / DATASET_DIR

    @property
    def registry_root(self) -> Path:
        return self.folder / REGISTRY_DIR

    @property
    def plan_path(self) -> Path:
        return self.folder / PLAN_FILE

    @property
    def effort_log_path(self) -> Path:
        return self.folder / EFFORT_FILE

    def registry(self, **kwargs: Any) -> ModelRegistry:
        from unet_engine.registry.versions import ModelRegistry

        return ModelRegistry(self.registry_root, **kwargs)

    def dataset(self, **kwargs: Any) -> RetrainingDataset:
        """The project's retraining dataset (its labels brought up to the current schema)."""
        return sync_dataset_labels(self, **kwargs)

    # ----- the plan -----------------------------------------------------------------------------
    @property
    def plan(self) -> dict[str, Any] | None:
        """The saved training plan (a ``TrainingPlan.to_dict()``), or None when none was made."""
        try:
            data = json.loads(self.plan_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProjectError(f"plan.json is unreadable ({exc}); plan the first model again", self.plan_path) from None
        if not isinstance(data, dict):
            raise ProjectError("plan.json is not a JSON object; plan the first model again", self.plan_path)
        return data

    def save_plan(self, plan: dict[str, Any]) -> None:
        atomic_write_json(self.plan_path, plan)

    # ----- the model ----------------------------------------------------------------------------
    def bundled_start_path(self) -> Path | None:
        """The bundled model this project started from (None: it did not, or it is missing)."""
        if self.start_model != BUNDLED_START:
            return None
        folder = BUNDLED_MODELS / "default"
        return folder if (folder / CARD_NAME).is_file() else None

    def model_path(self) -> Path | None:
        """The checkpoint inference uses: the registry's active version, else the bundled model
        the project started from, else None (the project has no model yet)."""
        try:
            active = self.registry().active_checkpoint_path()
        except Exception as exc:  # noqa: BLE001 - an unreadable registry: say "no model", logged
            log.warning("could not read the model registry of %s: %s", self.name, exc)
            active = None
        return active if active is not None else self.bundled_start_path()

    def has_model(self) -> bool:
        return self.model_path() is not None

    def start_version(self) -> str | None:
        """Where the next fine-tune starts: the active version, ``"default"`` (the bundled model
        the project started from), or None: the project needs a first model (a plan, from scratch)."""
        active = self.registry().active
        if active is not None:
            return active
        return "default" if self.bundled_start_path() is not None else None

    # ----- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "modality": self.modality,
            "description": self.description,
            "created": self.created,
            "labels": [x.to_dict() for x in self.label_list],
            "label_schema_version": self.schema_version,
            "label_schemas": [s.to_dict() for s in self.schemas],
            "start_model": self.start_model,
            "dataset": DATASET_DIR,
            "registry": REGISTRY_DIR,
            "plan": PLAN_FILE,
            "settings": self.settings,
        }

    def save(self) -> None:
        """Write ``project.json`` atomically."""
        atomic_write_json(self.project_file, self.to_dict())


def _relative_field(data: dict[str, Any], key: str, expected: str, path: Path) -> None:
    value = data.get(key, expected)
    text = str(value)
    posix = PurePosixPath(text.replace("\\", "/"))
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or ".." in posix.parts:
        raise ProjectError(f"project.json gives '{key}' as {text!r}; a project holds only paths relative to its folder "
                           f"(expected {expected!r}): copy the {key} into the project folder", path)
    if text.replace("\\", "/").strip("/") != expected:
        raise ProjectError(f"project.json gives '{key}' as {text!r}; this SegLoop expects {expected!r}", path)


def project_from_dict(data: Any, folder: Path) -> Project:
    """Parse ``project.json`` content; ProjectError naming the file for anything wrong."""
    path = folder / PROJECT_FILE
    if not isinstance(data, dict):
        raise ProjectError("project.json is not a JSON object; restore it from a backup", path)
    if data.get("format") != FORMAT:
        raise ProjectError(f"not a SegLoop project file (format {data.get('format')!r})", path)
    version = data.get("format_version")
    if not isinstance(version, int):
        raise ProjectError("project.json has no format_version; restore it from a backup", path)
    if version > FORMAT_VERSION:
        raise ProjectError(f"this project was written by a newer SegLoop (project format {version}, this SegLoop "
                           f"reads up to {FORMAT_VERSION}); update SegLoop to open it", path)
    for key, expected in (("dataset", DATASET_DIR), ("registry", REGISTRY_DIR), ("plan", PLAN_FILE)):
        _relative_field(data, key, expected, path)
    try:
        schemas = [LabelSchema.from_dict(s) for s in data["label_schemas"]]
        modality = normalize_modality(data["modality"])
    except ProjectError as exc:
        raise ProjectError(f"project.json: {exc}", path) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"project.json is incomplete or damaged ({type(exc).__name__}: {exc}); "
                           "restore it from a backup", path) from None
    if not schemas or [s.version for s in schemas] != list(range(1, len(schemas) + 1)):
        raise ProjectError("project.json: label schema versions must run 1, 2, 3...", path)
    start = data.get("start_model")
    if start not in (None, BUNDLED_START):
        raise ProjectError(f"project.json: unknown start_model {start!r}", path)
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise ProjectError("project.json: settings must be an object", path)
    return Project(folder=folder, name=folder.name, modality=modality, schemas=schemas, start_model=start,
                   description=str(data.get("description", "")), created=str(data.get("created", "")),
                   settings=dict(settings))


def load_project(folder: str | Path) -> Project:
    """Read the project in ``folder`` (its name is the folder's name)."""
    folder = Path(folder)
    path = folder / PROJECT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError("not a SegLoop project folder (no project.json)", folder) from None
    except OSError as exc:
        raise ProjectError(f"project.json cannot be read ({exc.strerror or exc})", path) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProjectError(f"project.json is corrupt ({exc}); restore it from a backup or delete the project",
                           path) from None
    return project_from_dict(data, folder)


def sync_dataset_labels(project: Project, **dataset_kwargs: Any) -> RetrainingDataset:
    """Open the project's dataset, creating it when absent, and bring its labels up to the
    project's current schema (see the module docstring)."""
    from unet_engine.data.dataset import RetrainingDataset

    folder = project.dataset_folder
    if not (folder / "dataset.json").is_file():
        if folder.is_dir() and any(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            raise ProjectError("the project's dataset has files but no dataset.json; restore dataset.json from a "
                               "backup (SegLoop will not guess which cases these are)", folder)
        return RetrainingDataset.create(folder, project.labels, name=project.name,
                                        modality=dataset_modality(project.modality), exist_ok=True, **dataset_kwargs)
    ds = RetrainingDataset(folder, **dataset_kwargs)
    have, want = ds.labels, project.labels
    extra = {k: v for k, v in have.items() if k not in want}
    renamed = {k: (v, want[k]) for k, v in have.items() if k in want and want[k] != v}
    if extra or renamed:
        parts = [f"label {k} {v!r} is not a label of the project" for k, v in extra.items()]
        parts += [f"label {k} is {a!r} in the dataset but {b!r} in the project" for k, (a, b) in renamed.items()]
        raise ProjectError("the project's dataset disagrees with project.json: " + "; ".join(parts) +
                           ". Restore the one that was edited by hand", folder)
    missing = {k: v for k, v in want.items() if k not in have}
    if missing:
        try:
            ds.add_labels(missing)
        except DatasetError as exc:
            raise ProjectError(f"could not add the project's labels to its dataset: {exc}", folder) from None
    return ds
