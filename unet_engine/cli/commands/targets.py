"""``--project NAME`` or a folder: where a subcommand reads and writes.

Every command that works on a dataset or a model registry takes either a folder
(``dataset add DIR``, ``train --dataset DIR``, ``models --registry DIR``) or a project
(``--project NAME``), never both. A project is looked up only after
:func:`unet_engine.projects.first_start` has run (migration of earlier data, or the
default project on a first start), so the first command a user types sees the same
projects the app shows.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from unet_engine.errors import SegLoopError

if TYPE_CHECKING:  # imported lazily at run time (torch)
    from unet_engine.projects import Project, ProjectStore


def add_project_option(p: argparse.ArgumentParser, what: str = "dataset and models") -> None:
    """``--project NAME`` (dest ``project``)."""
    p.add_argument("--project", default=None, metavar="NAME",
                   help=f"work on this project's {what} (see `segloop project list`)")


def project_store() -> "ProjectStore":
    """The user's projects, after the first-start migration."""
    from unet_engine.projects import ProjectStore, first_start

    first_start()
    return ProjectStore()


def open_project(name: str) -> "Project":
    """The project called ``name`` (case-insensitive); a ProjectError names the known ones."""
    return project_store().open(name)


def one_of(project: str | None, folder: Any, folder_flag: str, *, required: bool = True) -> None:
    """Refuse a project and a folder together, and (``required``) neither of them."""
    if project is not None and folder is not None:
        raise SegLoopError(f"give either {folder_flag} or --project NAME, not both")
    if required and project is None and folder is None:
        raise SegLoopError(f"give {folder_flag} or --project NAME")


def quote(text: str) -> str:
    """``text`` quoted for a shell command line the user can copy."""
    return shlex.quote(text)


def missing_cases(project: "Project") -> int:
    """Corrected cases the project still needs before its first model can be trained."""
    from unet_engine.projects import FIRST_MODEL_MIN_CASES

    folder = project.dataset_folder
    n = 0
    if (folder / "dataset.json").is_file():
        from unet_engine.data.dataset import RetrainingDataset

        n = len(RetrainingDataset(folder))
    return max(0, FIRST_MODEL_MIN_CASES - n)


def no_model_error(project: "Project") -> SegLoopError:
    """What predict/eval say for a project without a model."""
    from unet_engine.errors import ProjectError

    need = missing_cases(project)
    name = quote(project.name)
    add = (f"add {need} more corrected case{'s' if need != 1 else ''} "
           f"(segloop dataset add --project {name} --image SCAN --label MASK), then " if need else "")
    return ProjectError(f"project {project.name!r} has no model yet: {add}train its first model with "
                        f"`segloop train --project {name} --minutes M`")


def modality_problem(volume: Any, project: "Project") -> str | None:
    """How ``volume``'s intensities contradict the project's modality, in the project's words."""
    from unet_engine.data.modality_check import modality_mismatch

    return modality_mismatch(volume, project.modality, subject=f"project {project.name!r}")
