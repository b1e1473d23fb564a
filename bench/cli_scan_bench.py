"""The app on whole scans, as a user runs it: ``segloop predict`` in a fresh process per scan.

    .venv/bin/python bench/cli_scan_bench.py [--threads 2] [--model default] [--full]

Scans (the rows "the app on ..." of the full-size issue):

* the real spleen CT (164 x 166 x 26, ``../shared/data/formats/ct_spleen_nifti``);
* the real 3-slice CT DICOM series (512 x 512 x 3, ``ct_dicom_3slice``);
* a 20 x 512 x 512 CT DICOM series written by SimpleITK from the synthetic CT
  (``bench/synthetic_ct.py``, slices 190-209, 0.8 x 0.8 x 1 mm, int16 Hounsfield units);
* with ``--full``: the synthetic CT's 300 middle slices as a 300 x 512 x 512 ``.nii.gz``.

Prints, per scan, the wall time of the whole command (start-up, reading, model loading,
prediction, writing) and the prediction time the command reports on its progress bar.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT.parent / "shared" / "data" / "formats"
sys.path.insert(0, str(ROOT))


def write_dicom_series(volume: np.ndarray, spacing: tuple[float, float, float], folder: Path) -> Path:
    """``volume`` ``[k, j, i]`` int16 as an axial CT DICOM series in ``folder`` (one file per slice)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((spacing[2], spacing[1], spacing[0]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    stamp = time.strftime("%Y%m%d")
    series = f"1.2.826.0.1.3680043.2.1125.{int(time.time())}"
    common = [("0008|0060", "CT"), ("0008|0021", stamp), ("0008|0031", "120000"), ("0020|000e", series),
              ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0008|103e", "synthetic CT (bench)"), ("0010|0010", "Bench^Synthetic"),
              ("0028|1052", "0"), ("0028|1053", "1"), ("0028|1054", "HU")]
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        for tag, value in common:
            plane.SetMetaData(tag, value)
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        plane.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in origin))
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0018|0050", f"{spacing[0]:.4f}")
        writer.SetFileName(str(folder / f"slice{k:04d}.dcm"))
        writer.Execute(plane)
    return folder


def run(scan: Path, out: Path, model: str, threads: int) -> tuple[float, str]:
    """Wall seconds of ``segloop predict`` and the time its progress bar reports."""
    cmd = [sys.executable, "-m", "unet_engine.cli.main", "predict", str(scan), str(out), "--model", model,
           "--threads", str(threads), "--device", "cpu"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{scan}: segloop predict failed ({done.returncode}):\n{done.stderr}")
    bars = re.findall(r"(\d+(?:\.\d+)?)s \d+/\d+ (?:patches|slices)", done.stdout + done.stderr)
    return wall, (bars[-1] + " s") if bars else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="default")
    ap.add_argument("--full", action="store_true", help="also the 300 x 512 x 512 synthetic CT (minutes)")
    args = ap.parse_args()
    from bench.synthetic_ct import SPACING, make_ct

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ct, _ = make_ct()
        scans = [("real spleen CT 164 x 166 x 26 (NIfTI)", FORMATS / "ct_spleen_nifti" / "image.nii.gz"),
                 ("real CT DICOM 512 x 512 x 3", FORMATS / "ct_dicom_3slice" / "series"),
                 ("synthetic CT DICOM 512 x 512 x 20", write_dicom_series(ct[190:210], SPACING, work / "dicom20"))]
        if args.full:
            full = work / "ct300.nii.gz"
            image = sitk.GetImageFromArray(np.ascontiguousarray(ct[50:350]))
            image.SetSpacing((SPACING[2], SPACING[1], SPACING[0]))
            sitk.WriteImage(image, str(full), useCompression=True)
            scans.append(("synthetic CT 512 x 512 x 300 (.nii.gz)", full))
        del ct
        print(f"segloop predict --model {args.model} --threads {args.threads} --device cpu, one process per scan\n")
        print("| scan | whole command | prediction (progress bar) |")
        print("|---|---|---|")
        for name, scan in scans:
            if not scan.exists():
                print(f"| {name} | (not here: {scan.name}) | - |")
                continue
            wall, bar = run(scan, work / "labels.nii.gz", args.model, args.threads)
            print(f"| {name} | {wall:.2f} s | {bar} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
