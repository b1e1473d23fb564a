"""bfloat16 inference on the CPU: chosen by measurement or the environment, same labels as float32."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train_helpers import HIPPO
from unet_engine import devices
from unet_engine.inference.predict import predict_volume
from unet_engine.io.volume_io import read_volume
from unet_engine.metrics import dice
from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.paths import BUNDLED_MODELS
from unet_engine.progress import run_generator


@pytest.fixture
def precision(monkeypatch):
    """Set SEGLOOP_CPU_BF16 for a test; the measured choice is forgotten before and after."""

    def use(value: str) -> None:
        monkeypatch.setenv(devices.CPU_BF16_ENV, value)
        devices.cpu_bf16_is_fast.cache_clear()

    yield use
    devices.cpu_bf16_is_fast.cache_clear()


def test_the_environment_decides_and_otherwise_a_measurement(precision):
    precision("1")
    assert devices.cpu_bf16_is_fast() is True
    precision("0")
    assert devices.cpu_bf16_is_fast() is False
    precision("")  # measured: a yes or a no, whatever this CPU is
    assert devices.cpu_bf16_is_fast() in (True, False)


def test_bfloat16_labels_match_float32_on_real_cases(precision):
    model, card = load_checkpoint(BUNDLED_MODELS / "default", device="cpu")
    agree, dice32, dice16, changed = [], [], [], []
    for path in sorted((HIPPO / "imagesTr").glob("*.nii.gz")):
        volume = read_volume(path)
        reference = read_volume(HIPPO / "labelsTr" / path.name).array
        out = {}
        for value in ("0", "1"):
            precision(value)
            out[value] = run_generator(predict_volume(model, card, volume, device="cpu"))
        assert (out["0"].precision, out["1"].precision) == ("float32", "bfloat16")  # what the panel and CLI show
        probs = out["1"].probabilities
        assert np.isfinite(probs).all() and np.allclose(probs.astype(np.float32).sum(axis=0), 1.0, atol=1e-2)
        agree.append(float((out["0"].labels == out["1"].labels).mean()))
        changed.append(not np.array_equal(out["0"].probabilities, probs))
        for lab in (1, 2):
            dice32.append(dice(out["0"].labels, reference, lab))
            dice16.append(dice(out["1"].labels, reference, lab))
    assert all(changed)  # the bfloat16 path did run
    assert min(agree) >= 0.995
    assert abs(float(np.mean(dice16)) - float(np.mean(dice32))) <= 0.01
    assert float(np.mean(dice32)) > 0.8  # the model segments these cases: the comparison means something
