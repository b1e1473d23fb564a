"""Bad-input sweep (issue 18): mutated real files through ``segloop info``, ``segloop
predict`` and the GUI's open path, one line per run with its outcome.

    nice -n 15 .venv/bin/python bench/bad_input_sweep.py bench/bad_inputs/sweep.csv [--jobs 2]
        [--only REGEX] [--timeout 60] [--mem-gb 4] [--seed 18] [--random 6]

Inputs (:mod:`bad_input_list`, builders in :mod:`bad_input_cases`) are built in a temporary folder, never in the repository.
Each run is a subprocess with a timeout and an address-space limit (``RLIMIT_AS`` via
``resource.setrlimit`` in ``preexec_fn``). The GUI run is this script with ``--gui-open``:
headless (``QT_QPA_PLATFORM=offscreen``), it calls what File > Open runs in its worker,
:func:`desktop_app.io_jobs.load_scan` (for a model folder, what the model panel and the
inference job call: :func:`load_card` and :func:`load_checkpoint`), and reports the error
the way :meth:`desktop_app.controller.Controller.show_error` would show it: ``str(error)``
for a :class:`SegLoopError`, else "Unexpected error" plus a logged traceback.

Outcomes: ``clean-error`` (exit 2, one error line naming the file, no library output besides SegLoop's
own warnings), ``read-ok`` (read, or
predicted, with sane values and no warning printed), ``traceback``, ``accepted-wrong``
(a file that must be refused was accepted, or warnings / non-finite values came with the
result), ``memory`` (MemoryError, bad_alloc, killed), ``hang`` (timeout), ``unclear-error``
(exit 2 but not one line naming the file).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import csv
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_input_cases import HIPPO, MODEL, REPO, Case
from bad_input_list import all_cases

PY = sys.executable
OUTCOMES = ("clean-error", "read-ok", "traceback", "accepted-wrong", "memory", "hang", "unclear-error")
#: library output that means a value went wrong (overflow, a failed inflate, a short write)
_BAD_NOISE = re.compile(r"RuntimeWarning|Uncompress failed|\*\* ERROR|ERROR: In ")
#: library chatter (ITK's C++ warnings): printed, but not a wrong result by itself
_CHATTER = re.compile(r"WARNING: In ")
#: SegLoop's own stderr lines besides the error: its warnings and the progress bar
_OWN = re.compile(r"^(WARNING[ :]unet_engine|INFO[ :]unet_engine|segloop \S+: warning:|predict \[)")
_MEMORY = re.compile(r"MemoryError|bad_alloc|Cannot allocate memory|Unable to allocate|out of memory", re.I)


def _limits(mem_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        os.nice(15)
    return apply


def _run(cmd: list[str], timeout: float, mem: int) -> tuple[int | None, str, str, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONWARNINGS="default", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            cwd=REPO, env=env, preexec_fn=_limits(mem), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return rc, out, err, time.perf_counter() - t0


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if re.match(r"(segloop \S+: error:|GUI error:)", ln)]


def _names(case: Case, path: Path) -> list[str]:
    names = [path.name[:30], path.name[-30:]]
    if case.kind == "model":
        names += ["card.json", "model.safetensors"]
    return [n for n in names if n]


def classify(case: Case, path: Path, run: str, rc: int | None, out: str, err: str) -> tuple[str, str]:
    """(outcome, first error line or note) of one run."""
    lines = _error_lines(err)
    first = lines[0] if lines else (err.strip().splitlines() or [""])[-1]
    if rc is None:
        return "hang", "killed after the timeout"
    if _MEMORY.search(err) or rc in (-9, -11, 137, 139) or rc < 0:
        return "memory", first or f"exit {rc}"
    if "Traceback (most recent call last)" in err:
        return "traceback", err.strip().splitlines()[-1][:200]
    if rc == 2:
        ok = len(lines) == 1 and any(n in lines[0] for n in _names(case, path))
        stray = [ln for ln in err.splitlines() if ln.strip() and ln not in lines and not _OWN.search(ln)]
        if ok and stray:
            return "unclear-error", f"error line plus library output: {stray[0][:120]}"
        return ("clean-error" if ok else "unclear-error"), first[:300]
    if rc != 0:
        return "unclear-error", f"exit {rc}: {first[:200]}"
    if case.expect == "error":
        return "accepted-wrong", f"exit 0 (must be refused){_note(err)}"
    lines = [ln for ln in err.splitlines() if "predict [" not in ln]
    bad = [ln for ln in lines if _BAD_NOISE.search(ln)]
    if bad:
        return "accepted-wrong", f"warnings: {bad[0][:160]}"
    info = _json_tail(out)
    if run in ("info", "gui") and info is not None and case.kind == "scan":
        wrong = _sanity(info) or (case.check(info) if case.check else None)
        if wrong:
            return "accepted-wrong", wrong
    if any(_CHATTER.search(ln) for ln in lines):
        return "read-ok", "library chatter on stderr: " + next(ln for ln in lines if _CHATTER.search(ln))[:120]
    own = [ln for ln in lines if "warning" in ln.lower() and ln.strip()]
    if own:
        return "read-ok", f"with a warning: {own[0][:160]}"
    return "read-ok", ""


def _scrub(msg: str, tmp: str) -> str:
    """No machine paths in the table: the temp folder, the repository, library build trees."""
    msg = msg.replace(tmp, "<tmp>").replace(str(REPO), "<repo>")
    return re.sub(r"/\S*/(SimpleITK-build|site-packages)/\S*", r"<\1>", msg)


def _note(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "predict [" not in ln]
    return f"; stderr: {lines[0][:140]}" if lines else ""


def _json_tail(out: str) -> dict | None:
    start = out.find("{")
    try:
        return json.loads(out[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        return None


def _sanity(info: dict) -> str | None:
    nums = [info.get("min"), info.get("max"), *info.get("spacing_kji_mm", [])]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums):
        return f"non-finite values or spacing: {nums}"
    if not all(s > 0 for s in info.get("spacing_kji_mm", [1])):
        return f"spacing not positive: {info.get('spacing_kji_mm')}"
    if "window" in info and not all(math.isfinite(v) for v in info["window"]):
        return f"non-finite display window {info['window']}"
    return None


def commands(case: Case, path: Path, work: Path) -> list[tuple[str, list[str]]]:
    seg = [str(Path(PY).with_name("segloop"))]
    gui = [PY, str(Path(__file__).resolve()), "--gui-open"]
    out = work / "out" / f"{case.name[:60]}.nii.gz"
    if case.kind == "model":
        return [("predict", seg + ["predict", str(HIPPO), str(out), "--model", str(path), "--device", "cpu"]),
                ("gui", gui[:-1] + ["--model", str(path)])]
    if case.kind == "output":
        return [("predict", seg + ["predict", str(HIPPO), str(path), "--model", str(MODEL), "--device", "cpu"])]
    return [("info", seg + ["info", "--json", str(path)]),
            ("predict", seg + ["predict", str(path), str(out), "--model", str(MODEL), "--device", "cpu"]),
            ("gui", gui + [str(path)])]


def gui_open(target: str, is_model: bool) -> int:
    """Child side of a GUI run: what File > Open (or the model panel) runs, errors shown
    as the controller shows them."""
    import logging
    import traceback
    import warnings

    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("default")
    from unet_engine.errors import SegLoopError
    try:
        if is_model:
            from unet_engine.model.checkpoint import load_card, load_checkpoint
            load_card(target)
            load_checkpoint(target, device="cpu")
            print(json.dumps({"model": "ok"}))
            return 0
        from desktop_app.io_jobs import load_scan
        res = load_scan(target)
    except SegLoopError as exc:  # Controller.show_error: str(error) in the dialog
        print(f"GUI error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # noqa: BLE001 - Controller.show_error: "Unexpected error" + logged traceback
        traceback.print_exc()
        print(f"GUI error: Unexpected error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 3
    v, s = res.volume, res.stats
    window = [float(s.vmin), float(s.vmax), float(s.auto_low), float(s.auto_high)]
    print(json.dumps({"shape_kji": list(v.shape), "spacing_kji_mm": [float(x) for x in v.spacing],
                      "min": float(v.array.min()), "max": float(v.array.max()), "modality": v.modality,
                      "window": window}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="?", help="where to write the per-run CSV")
    ap.add_argument("--gui-open", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--model", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--only", default=None, help="run the cases whose name matches this regex")
    ap.add_argument("--runs", default="info,predict,gui", help="which runs (comma-separated)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--mem-gb", type=float, default=4.0, help="address-space limit of each run")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--random", type=int, default=6, help="random header mutations per format")
    args = ap.parse_args()
    if args.gui_open or args.model:
        return gui_open(args.gui_open or args.model, is_model=bool(args.model))
    if not args.csv:
        ap.error("give the CSV path")
    cases = [c for c in all_cases(args.seed, args.random) if not args.only or re.search(args.only, c.name)]
    wanted = set(args.runs.split(","))
    mem = int(args.mem_gb * 2**30)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="segloop_bad_inputs_") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        jobs = []
        for case in cases:
            folder = work / "in" / re.sub(r"[^\w.=-]", "_", case.name)[:80]
            folder.mkdir(parents=True)
            try:
                path = case.build(folder)
            except Exception as exc:  # noqa: BLE001 - a builder bug is reported, not fatal
                print(f"{case.name}: could not build: {exc!r}", file=sys.stderr)
                continue
            jobs += [(case, path, run, cmd) for run, cmd in commands(case, path, work) if run in wanted]
        print(f"{len(cases)} inputs, {len(jobs)} runs (timeout {args.timeout:.0f} s, memory {args.mem_gb:g} GiB)")
        print(f"{'case':<40} {'class':<24} {'run':<8} {'outcome':<15} {'s':>5}  message")

        def one(job):
            case, path, run, cmd = job
            rc, out, err, sec = _run(cmd, args.timeout * (2 if run == "predict" else 1), mem)
            outcome, msg = classify(case, path, run, rc, out, err)
            return dict(case=case.name, cls=case.cls, run=run, expect=case.expect, outcome=outcome,
                        rc="" if rc is None else rc, seconds=f"{sec:.1f}", message=_scrub(msg, tmp))

        with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for row in pool.map(one, jobs):
                rows.append(row)
                print(f"{row['case'][:40]:<40} {row['cls'][:24]:<24} {row['run']:<8} {row['outcome']:<15} "
                      f"{row['seconds']:>5}  {row['message'][:150]}", flush=True)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print_summary(rows)
    return 0


def print_summary(rows: list[dict]) -> None:
    by_cls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        by_cls[r["cls"]][r["outcome"]] += 1
    total = collections.Counter(r["outcome"] for r in rows)
    print(f"\n{'class':<26}" + "".join(f"{o:>15}" for o in OUTCOMES))
    for cls, cnt in list(by_cls.items()) + [("TOTAL", total)]:
        print(f"{cls:<26}" + "".join(f"{cnt.get(o, 0):>15}" for o in OUTCOMES))
    print(f"{len(rows)} runs: " + ", ".join(f"{total[o]} {o}" for o in OUTCOMES if total[o]))


if __name__ == "__main__":
    sys.exit(main())
