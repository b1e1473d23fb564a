"""Versioned label schemas: add labels to a project without touching what exists.

``project.json`` is the authority on a project's labels; the dataset's ``dataset.json``
follows it. :func:`add_labels` writes the new schema version to ``project.json`` first and
then adds the labels to the dataset, so a process killed in between leaves a dataset
that lacks the new labels, which :func:`sync_dataset_labels` (run whenever the project's
dataset is opened) completes. A dataset that disagrees with its project in any other way
(a label the project lacks, another name for a value) is refused, never reconciled by
guessing.
"""

from __future__ import annotations

import logging
from typing import Any

from unet_engine.dataset_lock import FolderLock
from unet_engine.errors import DatasetError, ProjectError
from unet_engine.projects.project import (
    LabelSchema,
    Project,
    ProjectLabel,
    dataset_modality,
    load_project,
    make_labels,
    now_iso,
)

log = logging.getLogger(__name__)


def project_lock(project: Project, timeout: float = 10.0) -> FolderLock:
    """The write lock of one project's ``project.json``."""
    return FolderLock(project.folder, timeout=timeout, what=f"project {project.name!r}", error_cls=ProjectError)


def new_labels(project: Project, labels: Any, colours: dict[int, Any] | None = None) -> tuple[ProjectLabel, ...]:
    """The labels of ``labels`` that ``project`` lacks; ProjectError when one contradicts it
    (a value it has under another name, or a name it uses for another value)."""
    wanted = make_labels(labels, colours)
    current = project.labels
    names = {v.casefold(): k for k, v in current.items()}
    out = []
    for lab in wanted:
        if lab.value in current:
            if current[lab.value] != lab.name:
                raise ProjectError(f"label {lab.value} is {current[lab.value]!r} in project {project.name!r}, not "
                                   f"{lab.name!r}; labels are never renamed (use a free value, e.g. "
                                   f"{max(current) + 1})", project.folder)
            continue
        if lab.name.casefold() in names:
            value = names[lab.name.casefold()]
            raise ProjectError(f"project {project.name!r} already calls label {value} {current[value]!r}; give "
                               f"label {lab.value} another name", project.folder)
        out.append(lab)
    return tuple(out)


def add_labels(project: Project, labels: Any, colours: dict[int, Any] | None = None, *,
               lock_timeout: float = 10.0) -> Project:
    """Add labels to ``project`` as a new schema version; returns the project as now on disk.

    Labels the project already has (same value and name) are skipped; with nothing new the
    schema version does not change.
    """
    with project_lock(project, lock_timeout).hold():
        current = load_project(project.folder)  # another process may have changed it
        added = new_labels(current, labels, colours)
        if added:
            merged = make_labels(list(current.label_list) + list(added))
            change = "added " + ", ".join(f"{x.value} {x.name!r}" for x in added)
            current.schemas.append(LabelSchema(current.schema_version + 1, merged, now_iso(), change))
            current.save()
            log.info("project %s: label schema v%d (%s)", current.name, current.schema_version, change)
    sync_dataset_labels(current)
    return current


def sync_dataset_labels(project: Project, **dataset_kwargs: Any):  # noqa: ANN201 - RetrainingDataset
    """Open the project's dataset, creating it when absent, and bring its labels up to the
    project's current schema (see the module docstring)."""
    from unet_engine.dataset import RetrainingDataset

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
