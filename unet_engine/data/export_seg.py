"""Export a retraining dataset's labels as DICOM SEG, one file per case whose scan came from DICOM (issue 16).

For every case of the dataset, :func:`export_dicom_seg`:

* looks at the case's recorded ``source_path`` (``dataset.json``); a case with none, or
  whose source is not a DICOM series folder or DICOM file, is *skipped* ("not DICOM");
  a source that no longer exists is skipped ("source missing");
* reads the source series again with :func:`unet_engine.io.volume_io.read_volume` and checks that
  the dataset's stored image lies on exactly the same grid (shape, spacing, origin,
  direction, :func:`unet_engine.volume.geometry_differences`) and holds the same voxels
  (its content hash, :func:`unet_engine.data.case_identity.content_hash`); otherwise the case is
  skipped ("geometry differs" / "source changed"). Nothing is ever resampled;
* writes ``<out>/<case_id>.dcm`` with :func:`unet_engine.io.dicom_seg_write.write_dicom_seg`
  (atomic; an existing file of that name is replaced), its segments named by the
  dataset's labels and coloured by ``colours`` (a project's label colours; a plain dataset
  stores none, so the default colour of each value is used).

The output folder may not be one of the source series folders nor lie inside one (the
export is refused before anything is written). A case that fails to write (e.g. an empty
label map) is skipped with the writer's reason; the export carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from unet_engine.data.dataset import CaseInfo, RetrainingDataset
from unet_engine.errors import SegLoopError
from unet_engine.io.checks import is_dicom_file
from unet_engine.io.label_descriptions import default_colour
from unet_engine.progress import Progress
from unet_engine.volume import geometry_differences, int3

log = logging.getLogger(__name__)

WRITTEN = "written"
NOT_DICOM = "not DICOM"
SOURCE_MISSING = "source missing"
GEOMETRY_DIFFERS = "geometry differs"
SOURCE_CHANGED = "source changed"
FAILED = "not written"

#: file names that say "not DICOM" even when the file is gone
_NON_DICOM_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
                       ".bmp")


@dataclass
class CaseSegExport:
    """What happened to one case: ``status`` is :data:`WRITTEN` or one of the skip kinds."""

    case_id: str
    status: str
    reason: str = ""
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.status == WRITTEN


@dataclass
class SegExportReport:
    out_folder: Path
    cases: list[CaseSegExport] = field(default_factory=list)

    @property
    def written(self) -> list[CaseSegExport]:
        return [c for c in self.cases if c.written]

    @property
    def skipped(self) -> list[CaseSegExport]:
        return [c for c in self.cases if not c.written]

    @property
    def any_dicom(self) -> bool:
        """True when at least one case's source was (or may have been) DICOM."""
        return any(c.status != NOT_DICOM for c in self.cases)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cases:
            out[c.status] = out.get(c.status, 0) + 1
        return out


def _source_kind(case: CaseInfo) -> tuple[str, Path | None, str]:
    """``(status, source, reason)``: status "" for an existing DICOM source to export."""
    if not case.source_path:
        return NOT_DICOM, None, "no source path was recorded for this case"
    src = Path(case.source_path).expanduser()
    if not src.exists():
        if src.name.lower().endswith(_NON_DICOM_SUFFIXES):
            return NOT_DICOM, src, f"the source {src} is not DICOM (and no longer exists)"
        return SOURCE_MISSING, src, f"the source {src} no longer exists"
    if src.is_dir():
        return "", src, ""
    if is_dicom_file(src):
        return "", src, ""
    return NOT_DICOM, src, f"the source {src} is not a DICOM series or file"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def export_dicom_seg(dataset: RetrainingDataset, out_folder: str | Path, *,
                     colours: Mapping[int, tuple[int, int, int]] | None = None,
                     progress: Callable[[Progress], None] | None = None) -> SegExportReport:
    """Write ``out_folder/<case_id>.dcm`` for each case from DICOM (see the module doc)."""
    from unet_engine.data.case_identity import content_hash
    from unet_engine.io.dicom_seg_write import write_dicom_seg
    from unet_engine.io.volume_io import read_volume

    out = Path(out_folder).expanduser()
    cases = dataset.cases()
    kinds = [(c, *_source_kind(c)) for c in cases]
    out_resolved = out.resolve()
    for _c, status, src, _reason in kinds:
        if status == "" and src is not None:
            series_folder = (src if src.is_dir() else src.parent).resolve()
            if _inside(out_resolved, series_folder):
                raise SegLoopError(f"the output folder lies inside the source DICOM series folder {series_folder}; "
                                   "choose a folder outside every source series", out)
    if out.exists() and not out.is_dir():
        raise SegLoopError("the output exists and is not a folder", out)
    colours = dict(colours or {})
    labels = {v: (name, int3(colours.get(v, default_colour(v)))) for v, name in dataset.labels.items()}
    report = SegExportReport(out)
    made_folder = False
    total = len(kinds)
    for n, (case, status, src, reason) in enumerate(kinds):
        if progress is not None:
            progress(Progress(n / max(total, 1), f"case {case.id}", n, total))
        if status:
            report.cases.append(CaseSegExport(case.id, status, reason))
            continue
        assert src is not None
        try:
            series = read_volume(src)
        except SegLoopError as exc:
            report.cases.append(CaseSegExport(case.id, FAILED, f"the source {src} could not be read ({exc})"))
            continue
        image, label, _edits = dataset.load_case(case)
        diffs = geometry_differences(series, image)
        if diffs:
            report.cases.append(CaseSegExport(
                case.id, GEOMETRY_DIFFERS, f"the dataset's image is not on the grid of the source {src} "
                                           f"({'; '.join(diffs)}); not resampled"))
            continue
        if case.hash and content_hash(series) != case.hash:
            report.cases.append(CaseSegExport(case.id, SOURCE_CHANGED, f"the source {src} no longer holds the voxels "
                                                                       "the case was added from"))
            continue
        if not made_folder:
            out.mkdir(parents=True, exist_ok=True)
            made_folder = True
        target = out / f"{case.id}.dcm"
        try:
            written = write_dicom_seg(label, series, target, labels=labels)
        except SegLoopError as exc:
            report.cases.append(CaseSegExport(case.id, FAILED, str(exc)))
            continue
        report.cases.append(CaseSegExport(case.id, WRITTEN, "", written.path, list(written.warnings)))
    if progress is not None:
        progress(Progress(1.0, "done", total, total))
    log.info("DICOM SEG export to %s: %s", out, report.counts())
    return report
