"""First start with projects: the single dataset and registry of earlier SegLoop versions
become the project "Hippocampus (MRI)", with nothing lost.

Earlier versions kept one dataset in ``SEGLOOP_HOME/datasets/default``, one registry in
``SEGLOOP_HOME/models`` and the correction-effort log in ``SEGLOOP_HOME/effort_log.json``.
:func:`migrate_legacy_home` moves them (renames on one filesystem: no copy, no loss) into
a project folder built under ``projects/.migrating``, then renames that folder to the
project's name. Each step is "rename if the source is still there", so a process killed
at any point is finished by the next start (roll forward): the data is always in the old
place or in the new one, never in neither. A paused fine-tuning run's saved state moves
with the registry and stays resumable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from unet_engine.io.atomic import fsync_path
from unet_engine.model.checkpoint import load_card
from unet_engine.errors import SegLoopError
from unet_engine.paths import BUNDLED_MODELS, segloop_home
from unet_engine.projects.names import name_key
from unet_engine.projects.project import (
    BUNDLED_START,
    DATASET_DIR,
    EFFORT_FILE,
    PROJECT_FILE,
    REGISTRY_DIR,
    LabelSchema,
    Project,
    load_project,
    make_labels,
    now_iso,
)
from unet_engine.projects.store import ProjectStore
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.setup import path_run_key, run_folder

log = logging.getLogger(__name__)

LEGACY_PROJECT_NAME = "Hippocampus (MRI)"
_WORK = ".migrating"
_STATE_NOTE = ".legacy_state_key"  # the old dataset's saved-run key, written before the dataset moves


def legacy_items(home: Path) -> dict[str, Path]:
    """What an earlier SegLoop left in ``home`` (only the parts that exist)."""
    items = {"dataset": home / "datasets" / "default", "registry": home / "models", "effort": home / EFFORT_FILE}
    found = {}
    if (items["dataset"] / "dataset.json").is_file():
        found["dataset"] = items["dataset"]
    reg = items["registry"]
    if reg.is_dir() and ((reg / "versions").is_dir() or (reg / "active.json").is_file()):
        found["registry"] = reg
    if items["effort"].is_file():
        found["effort"] = items["effort"]
    return found


def needs_migration(home: Path | None = None) -> bool:
    home = Path(home) if home is not None else segloop_home()
    return bool(legacy_items(home)) or (home / "projects" / _WORK).is_dir()


def migrate_legacy_home(home: Path | None = None, store: ProjectStore | None = None, *,
                        on_step: Callable[[str], None] | None = None) -> Project | None:
    """Turn an earlier SegLoop's data in ``home`` into a project (see the module docstring).

    Returns the project, or None when there was nothing to migrate. Safe to call at every
    start; finishes a migration a killed process left half done.
    """
    home = Path(home) if home is not None else segloop_home()
    store = store or ProjectStore(home / "projects")
    hook = on_step or (lambda _s: None)
    work = store.root / _WORK
    if not legacy_items(home) and not work.is_dir():
        return None
    with store.lock.hold():
        items = legacy_items(home)
        if not work.is_dir() and not items:
            return None
        if not (work / PROJECT_FILE).is_file():
            work.mkdir(parents=True, exist_ok=True)
            _legacy_project(work, items).save()
            hook("project.json")
        old_dataset = items.get("dataset")
        if old_dataset is not None and not (work / DATASET_DIR).exists():
            # noted before the move: the saved run's key is derived from the old dataset path
            key = _legacy_state_key(items.get("registry"), old_dataset)
            if key:
                (work / _STATE_NOTE).write_text(key, encoding="utf-8")
            os.rename(old_dataset, work / DATASET_DIR)
            hook("dataset")
        if "registry" in items and not (work / REGISTRY_DIR).exists():
            os.rename(items["registry"], work / REGISTRY_DIR)
            hook("registry")
        _move_saved_run(work)
        if "effort" in items and not (work / EFFORT_FILE).exists():
            os.rename(items["effort"], work / EFFORT_FILE)
            hook("effort")
        project = load_project(work)
        if not (work / DATASET_DIR / "dataset.json").is_file():
            project.dataset()  # an empty dataset with the project's labels
        name = _free_name(store, LEGACY_PROJECT_NAME)
        final = store.root / name
        os.rename(work, final)
        fsync_path(store.root)
        hook("done")
    _remove_empty(home / "datasets")
    log.info("moved the earlier dataset and model registry into project %r", name)
    return load_project(final)


def _legacy_project(folder: Path, items: dict[str, Path]) -> Project:
    """The project.json of the migrated data: labels from the dataset, else the active model, else
    the bundled one; colours from the model card."""
    card = None
    active = None
    reg = items.get("registry")
    if reg is not None:
        try:
            state = json.loads((reg / "active.json").read_text(encoding="utf-8"))
            active = reg / "versions" / str(state.get("active"))
        except (OSError, ValueError):
            active = None
    for candidate in (active, BUNDLED_MODELS / "default"):
        if candidate is not None and (candidate / "card.json").is_file():
            try:
                card = load_card(candidate)
                break
            except SegLoopError as exc:
                log.warning("migration: cannot read %s: %s", candidate, exc)
    labels: dict[int, str] = {}
    if "dataset" in items:
        meta = json.loads((items["dataset"] / "dataset.json").read_text(encoding="utf-8"))
        labels = {int(k): str(v) for k, v in meta.get("labels", {}).items() if int(k) != 0}
    if not labels and card is not None:
        labels = {k: v for k, v in card.labels.items() if k != 0}
    if not labels:
        labels = {1: "anterior", 2: "posterior"}
    colours = dict(card.colours) if card is not None else {}
    table = make_labels(labels, colours)
    bundled = (BUNDLED_MODELS / "default" / "card.json").is_file()
    return Project(folder=folder, name=LEGACY_PROJECT_NAME, modality="MR",
                   schemas=[LabelSchema(1, table, now_iso(), "moved from the earlier single dataset and registry")],
                   start_model=BUNDLED_START if bundled else None, created=now_iso(),
                   description="Created from the dataset and model versions of an earlier SegLoop version.")


def _legacy_state_key(registry: Path | None, dataset: Path) -> str | None:
    """Folder name under ``models/training/`` of the old dataset's saved run (None: no saved run).

    Earlier versions keyed it by the dataset's absolute path; a data folder restored or
    copied from elsewhere has another path, so the saved state whose recorded dataset was
    a ``datasets/default`` is taken when the exact key is not there.
    """
    if registry is None or not (registry / "training").is_dir():
        return None
    exact = path_run_key(dataset)
    if (registry / "training" / exact / "state.json").is_file():
        return exact
    found = []
    for state in sorted((registry / "training").glob("default-*/state.json")):
        try:
            recorded = str(json.loads(state.read_text(encoding="utf-8")).get("dataset", ""))
        except (OSError, ValueError):
            continue
        if recorded.replace("\\", "/").rstrip("/").endswith("datasets/default"):
            found.append(state.parent.name)
    return found[0] if len(found) == 1 else None


def _move_saved_run(work: Path) -> None:
    """Move the old dataset's saved training state to where runs on the project's dataset look."""
    note = work / _STATE_NOTE
    if not note.is_file() or not (work / REGISTRY_DIR).is_dir():
        return
    old = work / REGISTRY_DIR / "training" / note.read_text(encoding="utf-8").strip()
    new = run_folder(ModelRegistry(work / REGISTRY_DIR), SimpleNamespace(folder=work / DATASET_DIR))
    if old.is_dir() and not new.exists() and old != new:
        os.rename(old, new)
    note.unlink(missing_ok=True)


def _free_name(store: ProjectStore, wanted: str) -> str:
    taken = {name_key(n) for n in store.names()}
    if name_key(wanted) not in taken:
        return wanted
    n = 2
    while name_key(f"{wanted} {n}") in taken:
        n += 1
    return f"{wanted} {n}"


def _remove_empty(folder: Path) -> None:
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass
