"""Where SegLoop keeps its files: bundled resources and the per-user data folder."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository / install root holding ``resources/`` (the package is installed editable).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = PROJECT_ROOT / "resources"
BUNDLED_MODELS = RESOURCES / "models"
SAMPLES = RESOURCES / "samples"


def segloop_home() -> Path:
    """Per-user data folder (registry, datasets, autosave journal).

    ``$SEGLOOP_HOME`` overrides it (tests point it at a temp folder); otherwise
    ``$XDG_DATA_HOME/segloop`` or ``~/.local/share/segloop``.
    """
    env = os.environ.get("SEGLOOP_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "segloop"
