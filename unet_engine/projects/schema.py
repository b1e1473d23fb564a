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

from unet_engine.data.lock import FolderLock
from unet_engine.errors import ProjectError
from unet_engine.projects.project import (
    LabelSchema,
    sync_dataset_labels,
    Project,
    ProjectLabel,
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


