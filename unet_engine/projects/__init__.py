"""Projects: one structure to segment, with its own labels, dataset, model lineage and plan.

Public API::

    store = ProjectStore()                         # SEGLOOP_HOME/projects
    p = store.create("Spleen CT", modality="CT", labels={1: "spleen"})   # or start_model="default" / a folder
    p = store.open("Spleen CT")                    # case-insensitive
    p.labels, p.colours, p.modality, p.schema_version
    p.dataset()                                    # RetrainingDataset (created / synced with the labels)
    p.registry()                                   # ModelRegistry of the project
    p.model_path()                                 # active version > bundled start model > None
    p.start_version()                              # what a fine-tune starts from (None: plan a first model)
    p.plan / p.save_plan(dict)                     # the training plan (plan.json)
    add_labels(p, {3: "tail"})                     # a new label-schema version
    store.delete("Spleen CT", open_project=...)    # moves it to projects/.trash
    migrate_legacy_home()                          # earlier single dataset + registry -> "Hippocampus (MRI)"
    first_start()                                  # migration, else a default project from the bundled model
"""

from unet_engine.projects.names import MAX_NAME_LENGTH, check_project_name, name_key
from unet_engine.projects.project import (
    BUNDLED_START,
    FIRST_MODEL_MIN_CASES,
    MODALITIES,
    LabelSchema,
    Project,
    ProjectLabel,
    load_project,
    make_labels,
    normalize_modality,
)
from unet_engine.projects.schema import add_labels, new_labels
from unet_engine.projects.store import ProjectEntry, ProjectStore
from unet_engine.projects.migration import LEGACY_PROJECT_NAME, migrate_legacy_home, needs_migration
from unet_engine.projects.first_start import first_start

__all__ = [
    "BUNDLED_START", "FIRST_MODEL_MIN_CASES", "LEGACY_PROJECT_NAME", "MAX_NAME_LENGTH", "MODALITIES", "LabelSchema",
    "Project", "ProjectEntry",
    "ProjectLabel", "ProjectStore", "add_labels", "check_project_name", "first_start", "load_project", "make_labels",
    "migrate_legacy_home", "name_key", "needs_migration", "new_labels", "normalize_modality",
]
