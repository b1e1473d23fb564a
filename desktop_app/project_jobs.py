"""Background jobs of the project workflow (run in worker threads; no Qt, no widgets).

Each takes plain values (folders, names, dicts), calls the engine
(:mod:`unet_engine.projects`, :mod:`unet_engine.planning`) and returns its result or raises
a :class:`~unet_engine.errors.SegLoopError` whose text the GUI shows as is.

Planning a first model measures a few real training steps (the plan's calibration): that
runs in a spawned child process (:func:`in_child_process`), as training does, so neither the
GIL nor torch's process-wide thread count of the GUI process is touched; the worker thread
only waits for the child's answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from unet_engine.projects import Project, ProjectStore, add_labels, load_project

log = logging.getLogger(__name__)

#: Start choices of the New project dialog -> ``ProjectStore.create(start_model=...)``.
START_EMPTY, START_BUNDLED = "empty", "default"


def create_project_job(store_root: Path, name: str, modality: str, labels: list[tuple[Any, str, Any]] | None,
                       start_model: str | Path | None = None, description: str = "") -> Project:
    """Create a project (copies a checkpoint folder into its registry when one is given)."""
    start = None if start_model in (None, "", START_EMPTY) else start_model
    return ProjectStore(store_root).create(name, modality=modality, labels=labels or None, start_model=start,
                                          description=description)


def delete_project_job(store_root: Path, name: str, open_project: str | None) -> Path:
    """Move a project to the store's trash (refused for ``open_project``); returns where it went."""
    return ProjectStore(store_root).delete(name, open_project=open_project)


def add_labels_job(project_folder: Path, labels: dict[int, str], colours: dict[int, Any] | None = None) -> Project:
    """Add labels to the project as a new label-schema version; returns the project as on disk."""
    return add_labels(load_project(project_folder), labels, colours)


def plan_job(project_folder: Path, minutes: float, *, device: str = "auto", threads: int | None = None,
             calibrate: bool = True) -> Any:
    """Plan the project's first model for ``minutes`` (fingerprint + rules + a few timed steps)."""
    return in_child_process(_plan, Path(project_folder), float(minutes), device, threads, calibrate)


def replan_job(plan: Any, changes: dict[str, Any], project_folder: Path, *, calibrate: bool = True) -> Any:
    """The plan with the user's "Advanced" ``changes`` fixed and the rest planned again; the new
    network's steps are measured again when the network changed."""
    new = plan.with_changes(**changes)
    if calibrate and new.calibration_key() != plan.calibration_key():
        new = in_child_process(_calibrate, new, Path(project_folder))
    return new


def in_child_process(func: Any, *args: Any) -> Any:
    """``func(*args)`` in a freshly spawned process (its exception re-raised here)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(func, *args).result()


def _plan(project_folder: Path, minutes: float, device: str, threads: int | None, calibrate: bool) -> Any:
    from unet_engine.planning import plan_first_model

    project = load_project(project_folder)
    return plan_first_model(project.dataset(), project.modality, minutes=minutes, device=device,
                            calibrate=calibrate, threads=threads)


def _calibrate(plan: Any, project_folder: Path) -> Any:
    from unet_engine.planning import calibrate_plan

    return calibrate_plan(plan, load_project(project_folder).dataset())
