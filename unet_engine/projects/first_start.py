"""What the app and the CLI do before touching projects: migrate, or create the first project.

* Data of an earlier SegLoop (one dataset, one registry) becomes the project
  "Hippocampus (MRI)" (:mod:`unet_engine.projects.migration`).
* On a first start with no project at all, "Hippocampus (MRI)" is created from the model
  bundled with SegLoop, so the app opens ready to segment its sample scans.

A marker file (``projects/.initialised``) records that this was done: a user who later
deletes every project is not given the default one back.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unet_engine.errors import SegLoopError
from unet_engine.paths import BUNDLED_MODELS, segloop_home
from unet_engine.projects.migration import LEGACY_PROJECT_NAME, migrate_legacy_home, needs_migration
from unet_engine.projects.project import Project
from unet_engine.projects.store import ProjectStore

log = logging.getLogger(__name__)

MARKER = ".initialised"


def first_start(home: Path | None = None, store: ProjectStore | None = None) -> Project | None:
    """Migrate earlier data, or create the default project on a first start; returns the
    project made (None when there was nothing to do). Cheap when already done."""
    home = Path(home) if home is not None else segloop_home()
    store = store or ProjectStore(home / "projects")
    marker = store.root / MARKER
    made = None
    if needs_migration(home):
        made = migrate_legacy_home(home, store)
    elif not marker.exists() and not store.names() and (BUNDLED_MODELS / "default" / "card.json").is_file():
        try:
            made = store.create(LEGACY_PROJECT_NAME, modality="MR", start_model="default",
                                description="Hippocampus on T2 MRI crops, starting from SegLoop's bundled model.")
        except SegLoopError as exc:  # e.g. created meanwhile by another process
            log.warning("could not create the default project: %s", exc)
    if not marker.exists():
        store.root.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return made
