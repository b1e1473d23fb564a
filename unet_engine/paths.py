"""Where SegLoop keeps its files: bundled resources and the per-user data folder."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

#: Bundled model and sample scans: package data of ``unet_engine``, found the same way in a
#: source checkout, an editable install and an installed wheel.
RESOURCES = Path(str(importlib.resources.files("unet_engine") / "resources"))
BUNDLED_MODELS = RESOURCES / "models"
SAMPLES = RESOURCES / "samples"


def segloop_home() -> Path:
    """Per-user data folder (projects, datasets, models, autosave journal).

    ``$SEGLOOP_HOME`` overrides it (tests point it at a temp folder); otherwise the
    platform's user data folder (platformdirs): ``$XDG_DATA_HOME/segloop`` or
    ``~/.local/share/segloop`` on Linux, ``~/Library/Application Support/segloop`` on
    macOS, ``%LOCALAPPDATA%\\segloop`` on Windows.
    """
    env = os.environ.get("SEGLOOP_HOME")
    if env:
        return Path(env)
    import platformdirs  # only when no folder is set (a headless benchmark machine may lack it)

    return Path(platformdirs.user_data_dir("segloop", appauthor=False))
