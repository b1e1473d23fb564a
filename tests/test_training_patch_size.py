"""Which training patch and batch size a run uses (``training_setup.patch_size_for``,
``train_config.batch_size_for``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from unet_engine.checkpoint import ModelCard
from unet_engine.errors import SegLoopError
from unet_engine.model import ModelSpec
from unet_engine.train_config import TrainConfig
from unet_engine.training_setup import patch_size_for

CASES = [SimpleNamespace(shape=(36, 50, 35), spacing=(1.0, 1.0, 1.0)),
         SimpleNamespace(shape=(43, 58, 47), spacing=(1.0, 1.0, 1.0))]
SPEC_3D = ModelSpec(dims=3, base_width=4, depth=3)
SPEC_2D = ModelSpec(dims=2, base_width=4, depth=4)


def test_3d_default_is_the_largest_volume_rounded_to_the_network_multiple():
    assert patch_size_for(TrainConfig(), SPEC_3D, ModelCard(spec=SPEC_3D), CASES) == (48, 64, 48)


def test_3d_fine_tune_keeps_the_patch_the_parent_was_trained_with():
    card = ModelCard(spec=SPEC_3D, training={"patch_size": [40, 56, 40]})
    assert patch_size_for(TrainConfig(), SPEC_3D, card, CASES) == (40, 56, 40)
    # an explicit config wins; a size the network cannot take is rounded up
    assert patch_size_for(TrainConfig(patch_size=[30, 30, 30]), SPEC_3D, card, CASES) == (32, 32, 32)


def test_2d_ignores_the_parent_patch_and_takes_whole_slices():
    card = ModelCard(spec=SPEC_2D, training={"patch_size": [16, 16]})
    assert patch_size_for(TrainConfig(), SPEC_2D, card, CASES) == (64, 48)


def test_a_parent_patch_the_network_cannot_take_is_ignored():
    card = ModelCard(spec=SPEC_3D, training={"patch_size": [41, 56, 40]})
    assert patch_size_for(TrainConfig(), SPEC_3D, card, CASES) == (48, 64, 48)


def test_a_patch_of_the_wrong_dimension_is_refused():
    with pytest.raises(SegLoopError, match="patch_size"):
        patch_size_for(TrainConfig(patch_size=[32, 32]), SPEC_3D, ModelCard(spec=SPEC_3D), CASES)


def test_parent_batch_size_is_kept_for_3d_models_only():
    from unet_engine.train_config import parent_batch_size

    training = {"config": {"batch_size": 2}}
    assert parent_batch_size(3, training) == 2
    assert parent_batch_size(2, training) is None
    assert parent_batch_size(3, {}) is None and parent_batch_size(3, None) is None
    assert parent_batch_size(3, {"config": {"batch_size": "x"}}) is None


def test_batch_size_auto_is_16_slices_in_2d_and_the_parents_batch_in_3d():
    from unet_engine.train_config import batch_size_for

    auto = TrainConfig()
    assert auto.batch_size is None
    assert batch_size_for(auto, 2, {"config": {"batch_size": 32}}) == 16
    assert batch_size_for(auto, 3, {"config": {"batch_size": 3}}) == 3
    assert batch_size_for(auto, 3, {}) == 2
    assert batch_size_for(TrainConfig(batch_size=5), 3, {"config": {"batch_size": 3}}) == 5
    with pytest.raises(SegLoopError, match="batch_size"):
        TrainConfig(batch_size=0)
