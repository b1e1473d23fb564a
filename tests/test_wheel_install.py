"""A wheel built from the repository installs into a fresh virtual environment, and the
installed `segloop` finds its bundled model and samples there (package data read with
importlib.resources, not through the source tree)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

from unet_engine.io.volume_io import read_volume

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from this environment's
    site-packages through a .pth file (nothing is downloaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
         str(REPO)], cwd=tmp)
    wheels = list((tmp / "dist").glob("segloop-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    (site / "_segloop_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheels[0])],
        cwd=tmp)
    return env_dir


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["SEGLOOP_HOME"] = str(home)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def test_installed_package_finds_its_bundled_model_and_samples(installed: Path, tmp_path: Path):
    code = ("import unet_engine, desktop_app; from unet_engine.paths import BUNDLED_MODELS, SAMPLES; "
            "from unet_engine.registry.resolver import resolve_model_path; "
            "print(unet_engine.__file__); print(desktop_app.__file__); print(BUNDLED_MODELS); print(SAMPLES); "
            "print(resolve_model_path('default'))")
    out = run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=clean_env(tmp_path / "home"))
    paths = [Path(line) for line in out.stdout.split()]
    for p in paths:
        assert installed in p.parents, f"{p} is not inside the installed environment"
    assert (paths[2] / "default" / "model.safetensors").is_file()
    assert (paths[3] / "hippocampus_003.nii.gz").is_file()


def test_installed_segloop_predicts_with_the_default_model(installed: Path, tmp_path: Path):
    sample = installed / "lib"
    scans = list(sample.rglob("unet_engine/resources/samples/hippocampus_003.nii.gz"))
    assert scans, "the sample scans are package data of the wheel"
    out = tmp_path / "mask.nii.gz"
    run([str(installed / "bin" / "segloop"), "predict", str(scans[0]), str(out), "--model", "default", "--threads", "1"],
        cwd=tmp_path, env=clean_env(tmp_path / "home"))
    mask = read_volume(out).array
    assert mask.shape == read_volume(scans[0]).shape and set(np.unique(mask)) <= {0, 1, 2} and mask.any()
