"""What ``segloop project list`` and ``show`` report about a project (plain dicts + text).

Reading only: a project's dataset and registry are opened to count, never changed, and a
part that cannot be read is reported as the project's error instead of stopping the list.
"""

from __future__ import annotations

from typing import Any

from unet_engine.cli.commands.report import version_validation
from unet_engine.cli.commands.targets import missing_cases
from unet_engine.errors import SegLoopError


def _labels(project: Any) -> dict[str, str]:
    return {str(k): v for k, v in project.labels.items()}


def dataset_counts(project: Any) -> dict[str, int]:
    """``{cases, train, val}`` of the project's dataset (zeros before its first case)."""
    from unet_engine.data.dataset import RetrainingDataset

    if not (project.dataset_folder / "dataset.json").is_file():
        return {"cases": 0, "train": 0, "val": 0}
    ds = RetrainingDataset(project.dataset_folder)
    cases = ds.cases()
    val = sum(1 for c in cases if c.split == "val")
    return {"cases": len(cases), "train": len(cases) - val, "val": val}


def model_state(project: Any) -> dict[str, Any]:
    """Which model the project segments with: ``{state, active, text}``."""
    active = project.registry().active
    if active is not None:
        return {"state": "trained", "active": active, "text": f"{active} (active)"}
    if project.bundled_start_path() is not None:
        return {"state": "bundled", "active": None, "text": "bundled start model"}
    need = missing_cases(project)
    text = f"none yet (needs {need} more case{'s' if need != 1 else ''})" if need else "none yet (ready to train)"
    return {"state": "none", "active": None, "text": text}


def summary(entry: Any) -> dict[str, Any]:
    """One row of ``project list``: a project, or a broken folder with its error."""
    if entry.project is None:
        return {"name": entry.name, "folder": str(entry.folder), "error": entry.error}
    p = entry.project
    row: dict[str, Any] = {"name": p.name, "folder": str(p.folder), "modality": p.modality, "labels": _labels(p),
                           "schema_version": p.schema_version, "cases": None, "train": None, "val": None,
                           "model": None, "active_version": None, "error": None}
    try:
        row.update(dataset_counts(p))
        state = model_state(p)
        row["model"], row["active_version"] = state["text"], state["active"]
    except SegLoopError as exc:
        row["error"] = str(exc)
    return row


def _start_model(project: Any, versions: list[Any]) -> str:
    if project.start_model is not None:
        return "the bundled default model" + ("" if project.bundled_start_path() else " (missing from this installation)")
    imported = [v for v in versions if v.source == "import" and v.parent is None]
    if versions and imported and imported[0].version == versions[0].version:
        return f"imported model {imported[0].version}"
    return "none: the first model is planned from the project's dataset"


def _plan(project: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The saved plan and its summary lines (or the reason it cannot be read)."""
    try:
        data = project.plan
    except SegLoopError as exc:
        return None, [str(exc)]
    if data is None:
        return None, []
    try:
        from unet_engine.planning import TrainingPlan

        return data, TrainingPlan.from_dict(data).summary_lines()
    except (ImportError, SegLoopError) as exc:
        return data, [f"plan.json cannot be shown: {exc}"]


def details(project: Any) -> dict[str, Any]:
    """Everything ``project show`` prints."""
    versions = project.registry().list()
    plan, plan_lines = _plan(project)
    from unet_engine.projects import ProjectEntry

    out = summary(ProjectEntry(project.name, project.folder, project))
    out.update({
        "description": project.description,
        "created": project.created,
        "label_list": [x.to_dict() for x in project.label_list],
        "label_schemas": [s.to_dict() for s in project.schemas],
        "dataset_folder": str(project.dataset_folder),
        "registry_folder": str(project.registry_root),
        "start_model": _start_model(project, versions),
        "versions": [{"version": v.version, "parent": v.parent, "created": v.created, "source": v.source,
                      "name": v.name, "active": v.active, "validation": version_validation(v),
                      "metrics": v.metrics} for v in versions],
        "plan": plan,
        "plan_summary": plan_lines,
    })
    return out


def format_summary(rows: list[dict[str, Any]]) -> list[str]:
    """The text table of ``project list``."""
    if not rows:
        return ["no projects yet (segloop project create NAME --modality MR --labels 1=...)"]
    lines = []
    for r in rows:
        if "modality" not in r:
            lines.append(f"{r['name']}  BROKEN: {r['error']}")
            continue
        labels = ", ".join(f"{k}={v}" for k, v in r["labels"].items())
        cases = "?" if r["cases"] is None else f"{r['cases']} cases ({r['train']} train, {r['val']} val)"
        lines.append(f"{r['name']}  [{r['modality']}]  labels {labels} (schema v{r['schema_version']})  {cases}  "
                     f"model: {r['model'] or '?'}" + (f"  ERROR: {r['error']}" if r["error"] else ""))
    return lines


def format_details(d: dict[str, Any]) -> list[str]:
    """The text of ``project show``."""
    lines = [f"project {d['name']!r} [{d['modality']}]", f"  folder: {d['folder']}"]
    if d["description"]:
        lines.append(f"  description: {d['description']}")
    if d["error"]:
        lines.append(f"  ERROR: {d['error']}")
    lines.append(f"  labels (schema v{d['schema_version']}): " + ", ".join(f"{k}={v}" for k, v in d["labels"].items()))
    for s in d["label_schemas"]:
        names = ", ".join(f"{x['value']}={x['name']}" for x in s["labels"])
        lines.append(f"    v{s['version']} {s['created']} {s['change']}: {names}")
    lines.append(f"  dataset: {d['cases']} cases ({d['train']} train, {d['val']} val) in {d['dataset_folder']}")
    lines.append(f"  start model: {d['start_model']}")
    lines.append(f"  model: {d['model']}")
    for v in d["versions"]:
        lines.append(f"    {'*' if v['active'] else ' '} {v['version']}  parent={v['parent'] or '-':<6} {v['created']}  "
                     f"{v['source']:<15} {v['validation']}" + (f"  {v['name']}" if v["name"] else ""))
    if d["plan_summary"]:
        lines.append("  plan of the first model:")
        lines += [f"    {line}" for line in d["plan_summary"]]
    else:
        lines.append("  plan: none yet")
    return lines
