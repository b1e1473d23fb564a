"""Volume loading: SegLoop's read_volume vs plain nibabel / SimpleITK on the same files.

    .venv/bin/python bench/io_bench.py [--repeats 3] [--shape 400 512 512] [--mni PATH]

Files: the MNI152 T1 template (../shared/data/formats/mni152_t1, skipped when absent) and
a synthetic CT-like int16 volume (default 512 x 512 x 400) written to a temp folder as
.nii.gz and .nrrd (gzip). Each load runs in a fresh subprocess that first imports every
library (numpy, nibabel, SimpleITK, unet_engine.io.volume_io), then resets the kernel's peak-RSS
mark (Linux ``/proc/self/clear_refs``) and notes its RSS, loads the file into a numpy
array, and reads the peak RSS (``VmHWM``): the difference is the load's peak resident
memory including SimpleITK's C++ buffers, which tracemalloc cannot see. (``ru_maxrss`` is
not usable: after fork + exec Linux keeps the parent's peak in it.) The RSS of a process
that only imported the libraries is printed for reference.

Loaders: ``segloop`` = ``read_volume(path).array``; ``nibabel`` =
``np.asanyarray(nib.load(path).dataobj)``; ``sitk`` =
``sitk.GetArrayFromImage(sitk.ReadImage(path))``. Times are the median of ``--repeats``
runs, memory the maximum. Targets: time <= 1.3x the plain library's, peak <= 2x the
voxel bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MNI = ROOT.parent / "shared" / "data" / "formats" / "mni152_t1" / "image.nii.gz"


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """Reset the peak-RSS mark (Linux: /proc/self/clear_refs) and return the current RSS.

    ``ru_maxrss`` cannot be used on Linux: after fork + exec it still holds the parent's
    peak, so a child started by a parent that held the test volume starts out "high"."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        rss = _status_kib("VmRSS")
        if rss is not None:
            return rss * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _peak() -> int:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child(loader: str, path: str, warmup: str) -> None:
    """Run in a fresh process: import everything, load a tiny file of the same format
    with the same loader (first-use costs: IO factories, code pages), then time one load."""
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk

    from unet_engine.io.volume_io import read_volume

    loaders = {
        "segloop": lambda p: read_volume(p).array,
        "nibabel": lambda p: np.asanyarray(nib.load(p).dataobj),
        "sitk": lambda p: sitk.GetArrayFromImage(sitk.ReadImage(p)),
        "baseline": lambda p: np.zeros(1),
    }
    load = loaders[loader]
    load(warmup)
    before = _reset_peak()
    t0 = time.perf_counter()
    array = load(path)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_bytes": _peak() - before, "rss_base": before,
                      "nbytes": int(array.nbytes), "shape": list(array.shape), "dtype": str(array.dtype)}))


def run_child(loader: str, path: Path, warmup: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, "--child", loader, str(path), str(warmup)], capture_output=True,
                         text=True, env=env, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_big(folder: Path, shape: tuple[int, int, int]) -> list[Path]:
    """A CT-like int16 volume (smooth body + noise, realistic gzip ratio) as .nii.gz and .nrrd."""
    import numpy as np
    import SimpleITK as sitk

    nk, nj, ni = shape
    rng = np.random.default_rng(0)
    y = np.linspace(-1.0, 1.0, nj, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, ni, dtype=np.float32)[None, :]
    body = np.where(x * x + (y * 1.3) ** 2 < 0.8, 40.0, -1000.0).astype(np.float32)
    array = np.empty(shape, np.int16)
    for k in range(nk):
        array[k] = body + 30.0 * np.sin(k / 20.0) + rng.normal(0, 20, (nj, ni)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 1.0))
    image.SetOrigin((-180.0, -180.0, -200.0))
    paths = [folder / "ct_like.nii.gz", folder / "ct_like.nrrd"]
    for p in paths:
        sitk.WriteImage(image, str(p), True)
        sitk.WriteImage(image[:8, :8, :8], str(folder / f"tiny{''.join(p.suffixes)}"), True)  # warm-up files
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("LOADER", "PATH", "WARMUP"), help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 512, 512], metavar=("K", "J", "I"))
    ap.add_argument("--mni", type=Path, default=MNI)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="segloop_io_bench_") as tmp:
        files: list[Path] = []
        if args.mni.exists():
            files.append(args.mni)
        else:
            print(f"(skipping MNI152: {args.mni} not found)")
        t0 = time.perf_counter()
        files += make_big(Path(tmp), tuple(args.shape))  # type: ignore[arg-type]
        print(f"wrote the {' x '.join(map(str, args.shape[::-1]))} test volume in {time.perf_counter() - t0:.1f} s")
        def warm(p: Path) -> Path:
            return Path(tmp) / ("tiny.nii.gz" if p.name.endswith(".nii.gz") else "tiny.nrrd")

        base = run_child("baseline", files[0], warm(files[0]))
        rows = []
        for path in files:
            path.read_bytes()  # warm the page cache so every loader starts equal
            loaders = ["segloop", "sitk"] + (["nibabel"] if path.name.endswith((".nii", ".nii.gz")) else [])
            runs: dict[str, list[dict]] = {name: [] for name in loaders}
            for _ in range(args.repeats):
                for name in loaders:  # interleaved, so drift hits every loader alike
                    runs[name].append(run_child(name, path, warm(path)))
            for name in loaders:
                r = runs[name]
                rows.append({"file": path.name, "loader": name, "seconds": statistics.median(x["seconds"] for x in r),
                             "best": min(x["seconds"] for x in r),
                             "peak": max(x["peak_bytes"] for x in r), "nbytes": r[0]["nbytes"],
                             "shape": r[0]["shape"], "dtype": r[0]["dtype"], "size": path.stat().st_size})
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"baseline RSS after imports {base['rss_base'] / 2**20:.0f} MiB; median of {args.repeats} runs")
    print()
    print("| file | voxels (dtype) | loader | median time (s) | best (s) | median vs nibabel | median vs SimpleITK "
          "| peak RSS above baseline | peak / voxel bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        same = [r for r in rows if r["file"] == row["file"]]
        ref = {r["loader"]: r["seconds"] for r in same}
        vs_nib = f"{row['seconds'] / ref['nibabel']:.2f}x" if "nibabel" in ref else "-"
        vs_itk = f"{row['seconds'] / ref['sitk']:.2f}x"
        shape = " x ".join(map(str, row["shape"]))
        print(f"| {row['file']} ({row['size'] / 2**20:.0f} MiB) | {shape} ({row['dtype']}) | {row['loader']} | "
              f"{row['seconds']:.3f} | {row['best']:.3f} | {vs_nib} | {vs_itk} | {row['peak'] / 2**20:.0f} MiB | "
              f"{row['peak'] / row['nbytes']:.2f} |")
    print()
    ok = True
    for r in (x for x in rows if x["loader"] == "segloop"):
        plain = [x for x in rows if x["file"] == r["file"] and x["loader"] != "segloop"]
        for p in plain:
            med, best = r["seconds"] / p["seconds"], r["best"] / p["best"]
            t_ok = med <= 1.3
            ok &= t_ok
            print(f"{r['file']}: time vs {p['loader']}: {med:.2f}x median, {best:.2f}x best "
                  f"({'ok' if t_ok else 'OVER'}: target 1.3x)")
        m_ok = r["peak"] <= 2 * r["nbytes"]
        ok &= m_ok
        print(f"{r['file']}: peak {r['peak'] / r['nbytes']:.2f}x voxel bytes ({'ok' if m_ok else 'OVER'}: target 2x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
