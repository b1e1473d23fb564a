"""Project names: they are folder names under ``SEGLOOP_HOME/projects``, on every platform.

A name is refused (never silently changed) when it could not be the same folder on
Linux, macOS and Windows: path separators, characters Windows forbids, control
characters, a leading dot (hidden) or a trailing dot/space, a reserved device name
(``CON``, ``NUL``, ``COM1``...), or more than :data:`MAX_NAME_LENGTH` characters.
Names are compared without case (:func:`name_key`): two projects whose names differ only
in case would be one folder on macOS and Windows.
"""

from __future__ import annotations

import unicodedata

from unet_engine.errors import ProjectError

MAX_NAME_LENGTH = 64
_FORBIDDEN = set('<>:"/\\|?*')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def check_project_name(name: str) -> str:
    """``name`` in Unicode NFC when it is a valid project (folder) name; else ProjectError saying why."""
    if not isinstance(name, str):
        raise ProjectError(f"a project name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name)
    if not text.strip():
        raise ProjectError("a project needs a name (e.g. 'Spleen CT')")
    if text != text.strip():
        raise ProjectError(f"project name {name!r} starts or ends with a space; remove it")
    if len(text) > MAX_NAME_LENGTH:
        raise ProjectError(f"project name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    bad = sorted({c for c in text if c in _FORBIDDEN or unicodedata.category(c) == "Cc"})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ProjectError(f"project name {name!r} contains {shown}, which a folder name cannot hold; "
                           "use letters, digits, spaces, '-', '_', '(' and ')'")
    if text.startswith("."):
        raise ProjectError(f"project name {name!r} starts with '.', which would hide its folder")
    if text.endswith("."):
        raise ProjectError(f"project name {name!r} ends with '.', which Windows drops from folder names")
    if text.split(".")[0].upper() in _RESERVED:
        raise ProjectError(f"project name {name!r} is a reserved device name on Windows; choose another")
    return text


def name_key(name: str) -> str:
    """The identity of a project name: NFC and case-folded (``"Spleen"`` == ``"spleen"``)."""
    return unicodedata.normalize("NFC", name).casefold()
