"""The prepared GPU benchmark command runs, here on a CPU at toy sizes, with only the packages a
GPU machine has (torch, numpy, scipy, safetensors, filelock, matplotlib, and what
bench/gpu_prep.sh carries), so a lent GPU's minutes are not lost to a script error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what the GPU machine lacks even after bench/gpu_prep.sh: the GUI stack and the DICOM-SEG writer
MISSING_THERE = ("PySide6", "pyqtgraph", "superqt", "skimage", "OpenGL", "highdicom")

BLOCKER = f'''
import sys
MISSING = {MISSING_THERE!r}
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ImportError(f"not on the GPU machine: {{name}}")
        return None
sys.meta_path.insert(0, _Missing())
'''


def test_gpu_run_smoke_runs_every_benchmark_without_gui_packages(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "OUT": str(out), "PYTHON": sys.executable, "PYTHONPATH": str(site),
           "SEGLOOP_HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", "bench/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    inference = (out / "inference.txt").read_text(encoding="utf-8")
    assert "| 3D bundled | segloop, window" in inference and "| 2D 31.0 M" in inference
    fine_tune = (out / "fine_tune.txt").read_text(encoding="utf-8")
    assert "same weights with and without prefetching: True" in fine_tune and "batch 4:" in fine_tune
    resampling = (out / "resampling.txt").read_text(encoding="utf-8")
    assert "new vs old labels: 100.0000 % equal" in resampling
    # the blocker was in force: the GUI stack cannot be imported in that environment
    probe = subprocess.run([sys.executable, "-c", "import PySide6"], env=env, capture_output=True, text=True, check=False)
    assert probe.returncode != 0 and "not on the GPU machine" in probe.stderr
