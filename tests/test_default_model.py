"""The bundled default model (unet_engine/resources/models/default) and the bundled samples (unet_engine/resources/samples).

* the checkpoint loads (safetensors + card), its card says what it is (labels, colours,
  preprocessing, val Dice, the cases it was trained on with their content hashes);
* `segloop predict --model default` with an empty SEGLOOP_HOME (the conftest gives every
  test a fresh one) segments every bundled sample with Dice > 0.8 against its label;
* the registry imports it as the first version.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.cli.main import main
from unet_engine.io.volume_io import read_mask, read_volume
from unet_engine.metrics import dice
from unet_engine.paths import BUNDLED_MODELS, SAMPLES

DEFAULT = BUNDLED_MODELS / "default"
SAMPLE_SCANS = sorted(p for p in SAMPLES.glob("hippocampus_*.nii.gz") if not p.name.endswith("_label.nii.gz"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_default_model_loads_and_card_is_complete():
    assert sorted(p.name for p in DEFAULT.iterdir() if not p.name.startswith(".")) == ["TRAINING.md", "card.json",
                                                                                        "model.safetensors"]
    assert (DEFAULT / "model.safetensors").stat().st_size < 10 * 1024 * 1024  # small enough to ship
    model, card = load_checkpoint(DEFAULT, "cpu")
    assert card.labels == {0: "background", 1: "anterior", 2: "posterior"}
    assert set(card.colours) >= {1, 2}
    assert card.version.startswith("default-")
    assert card.spec.num_classes == 3
    assert card.preprocessing["mode"] in ("auto", "mr")
    val = card.metrics["val_dice"]
    assert val["anterior"] > 0.8 and val["posterior"] > 0.8
    cases = card.training["dataset"]["cases"]
    assert len(cases) == 195 and all(c["hash"].startswith("sha256:") for c in cases)
    assert {c["split"] for c in cases} == {"train", "val"}
    val_ids = {c["id"] for c in cases if c["split"] == "val"}
    for scan in SAMPLE_SCANS:  # the samples were never trained on
        assert scan.name.removesuffix(".nii.gz") in val_ids
    assert "segloop train" in card.training["command"]
    assert sum(p.numel() for p in model.parameters()) > 0


def test_samples_are_shipped_with_labels_and_credit():
    assert 2 <= len(SAMPLE_SCANS) <= 3
    for scan in SAMPLE_SCANS:
        assert scan.with_name(scan.name.replace(".nii.gz", "_label.nii.gz")).is_file()
    readme = (SAMPLES / "README.md").read_text()
    for needle in ("CC-BY-SA 4.0", "Simpson", "Antonelli", "Task04"):
        assert needle in readme
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    demo = [line for line in makefile.splitlines() if "segloop unet_engine/resources/samples/" in line]
    assert demo and any(s.name in demo[0] for s in SAMPLE_SCANS)


@pytest.mark.parametrize("scan", SAMPLE_SCANS, ids=lambda p: p.name)
def test_segloop_predict_default_on_sample(scan, tmp_path, _segloop_home):
    assert not any(Path(_segloop_home).iterdir())  # empty SEGLOOP_HOME: no registry yet
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(scan), str(out), "--model", "default", "--device", "cpu", "--threads", "1"]) == 0
    image = read_volume(scan)
    pred = np.asarray(read_mask(out, image))
    ref = np.asarray(read_mask(scan.with_name(scan.name.replace(".nii.gz", "_label.nii.gz")), image))
    scores = {k: dice(pred, ref, k) for k in (1, 2)}
    assert min(scores.values()) > 0.8, scores


def test_registry_imports_default_as_first_version():
    from unet_engine.registry.versions import ModelRegistry

    reg = ModelRegistry()
    info = reg.ensure_default()
    assert info is not None and info.version == "v0001" and info.source == "bundled-default"
    assert reg.active == "v0001"
    card = json.loads((info.path / "card.json").read_text())
    assert card["training"]["dataset"]["cases"]  # replay knows what the bundled model saw
