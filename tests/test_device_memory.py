"""How a prediction ran is reported with the GPU memory it used (on a GPU) and nothing invented elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.train_helpers import HIPPO
from unet_engine.devices import MemoryUse, PeakMemory, run_description
from unet_engine.inference.predict import predict_volume
from unet_engine.io.volume_io import read_volume
from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.paths import BUNDLED_MODELS
from unet_engine.progress import run_generator

CASE = HIPPO / "imagesTr" / "hippocampus_003.nii.gz"


def test_the_description_names_device_precision_and_gpu_memory():
    assert run_description("cpu", "bfloat16") == "cpu (bfloat16)"
    use = MemoryUse(peak=int(2.1 * (1 << 30)), total=140 << 30)
    assert run_description("cuda:0", "float16", use) == "cuda:0 (float16, peak GPU memory 2.10 of 140 GiB)"


def test_off_a_gpu_no_memory_figure_is_made_up(tmp_path):
    assert PeakMemory(torch.device("cpu")).stop() is None
    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    pred = run_generator(predict_volume(model, card, read_volume(CASE), device="cpu"))
    assert pred.memory is None
    out = subprocess.run([sys.executable, "-m", "unet_engine.cli.main", "predict", str(CASE), str(tmp_path / "l.nii.gz"),
                          "--device", "cpu", "--threads", "1"], capture_output=True, text=True, check=True)
    assert "on cpu (float32)" in out.stdout + out.stderr and "GPU memory" not in out.stdout + out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_peak_is_measured():  # pragma: no cover - runs where a GPU is
    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cuda")
    pred = run_generator(predict_volume(model, card, read_volume(CASE), device="cuda"))
    assert pred.memory is not None and 0 < pred.memory.peak <= pred.memory.total
    assert "peak GPU memory" in run_description(pred.device, pred.precision, pred.memory)
