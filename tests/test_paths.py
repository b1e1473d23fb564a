"""Where SegLoop keeps its files: the per-user data folder and the bundled resources."""

from __future__ import annotations

import sys

import pytest

from unet_engine.paths import BUNDLED_MODELS, SAMPLES, segloop_home


def test_user_folder_follows_the_platform_convention(monkeypatch, tmp_path):
    monkeypatch.delenv("SEGLOOP_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert segloop_home() == tmp_path / "xdg" / "segloop"
    monkeypatch.setenv("SEGLOOP_HOME", str(tmp_path / "mine"))
    assert segloop_home() == tmp_path / "mine"


@pytest.mark.parametrize("name", ["card.json", "model.safetensors"])
def test_bundled_model_is_found(name):
    assert (BUNDLED_MODELS / "default" / name).is_file()


def test_bundled_samples_are_found():
    assert (SAMPLES / "hippocampus_003.nii.gz").is_file()
