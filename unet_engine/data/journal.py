"""The journal of a retraining-dataset add or remove in progress (``.segloop-pending.json``).

Before a case's files are written (or deleted) the dataset names them here; the journal is
removed once ``dataset.json`` records the change. A writer killed in between leaves the
journal, and the next writer *settles* it: the journalled files ``dataset.json`` does not
list are deleted, then the journal. Only case files of the dataset itself
(``<case dir>/<id>.nii.gz``) are ever deleted: a damaged journal never removes anything else.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from unet_engine.io.atomic import atomic_write_json
from unet_engine.timestamps import now_iso

log = logging.getLogger(__name__)

PENDING_NAME = ".segloop-pending.json"
CASE_DIRS = ("imagesTr", "labelsTr", "editsTr")
EXT = ".nii.gz"


class PendingJournal:
    """The journal file of one dataset folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / PENDING_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def begin(self, op: str, case_id: str, files: list[str]) -> None:
        """Record that ``op`` ("add" / "remove") of ``case_id`` is about to touch ``files``
        (paths relative to the dataset folder, as ``dataset.json`` writes them)."""
        atomic_write_json(self.path, {"op": op, "id": case_id, "files": files, "started": now_iso()})

    def end(self) -> None:
        self.path.unlink(missing_ok=True)

    def case_file(self, rel: Any) -> Path | None:
        """A journalled path if it is a case file of this dataset, else None."""
        if not isinstance(rel, str):
            return None
        parts = rel.removeprefix("./").split("/")
        if (len(parts) != 2 or parts[0] not in CASE_DIRS or not parts[1].endswith(EXT)
                or not re.fullmatch(r"[A-Za-z0-9_-]+", parts[1][: -len(EXT)])):
            return None
        return self.folder / parts[0] / parts[1]

    def settle(self, listed: set[Path]) -> list[Path]:
        """Delete the journalled files not in ``listed`` (the resolved paths ``dataset.json``
        refers to), then the journal; returns the files deleted. Call with the lock held."""
        if not self.path.exists():
            return []
        try:
            pending = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable journal %s (%s)", self.path, exc)
            pending = {}
        if not isinstance(pending, dict):
            pending = {}
        removed = []
        for rel in pending.get("files") or []:
            path = self.case_file(rel)
            if path is None:
                log.warning("journal %s names %r, not a case file of this dataset; left alone", self.path, rel)
                continue
            if path.resolve() not in listed and path.is_file():
                path.unlink()
                removed.append(path)
        if removed:
            what = "removal" if pending.get("op") == "remove" else "add"
            log.warning("finished an interrupted %s of case %r in %s: deleted %s", what, pending.get("id", "?"),
                        self.folder, ", ".join(str(p.relative_to(self.folder)) for p in removed))
        self.end()
        return removed
