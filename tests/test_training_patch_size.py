"""Which training patch and batch size a run uses (``training_setup.patch_size_for``,
``train_config.batch_size_for``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from unet_engine.model.checkpoint import ModelCard
from unet_engine.errors import SegLoopError
from unet_engine.model.network import ModelSpec
from unet_engine.training.config import TrainConfig
from unet_engine.training.setup import patch_size_for

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


def test_2d_fine_tune_keeps_the_parent_patch_else_takes_whole_slices():
    card = ModelCard(spec=SPEC_2D, training={"patch_size": [16, 16]})
    assert patch_size_for(TrainConfig(), SPEC_2D, card, CASES) == (16, 16)  # e.g. a planned first model's
    assert patch_size_for(TrainConfig(), SPEC_2D, ModelCard(spec=SPEC_2D), CASES) == (64, 48)
    assert patch_size_for(TrainConfig(), SPEC_2D, ModelCard(spec=SPEC_2D, training={"patch_size": [40, 56, 40]}),
                          CASES) == (64, 48)  # a 3D patch on a 2D card is not this network's


def test_a_parent_patch_the_network_cannot_take_is_ignored():
    card = ModelCard(spec=SPEC_3D, training={"patch_size": [41, 56, 40]})
    assert patch_size_for(TrainConfig(), SPEC_3D, card, CASES) == (48, 64, 48)


def test_a_patch_of_the_wrong_dimension_is_refused():
    with pytest.raises(SegLoopError, match="patch_size"):
        patch_size_for(TrainConfig(patch_size=[32, 32]), SPEC_3D, ModelCard(spec=SPEC_3D), CASES)


def test_parent_batch_size_is_read_from_the_card():
    from unet_engine.training.config import parent_batch_size

    assert parent_batch_size({"config": {"batch_size": 2}}) == 2
    assert parent_batch_size({}) is None and parent_batch_size(None) is None
    assert parent_batch_size({"config": {"batch_size": "x"}}) is None


def test_batch_size_auto_is_the_parents_batch_else_16_slices_or_2_patches():
    from unet_engine.training.config import batch_size_for

    auto = TrainConfig()
    assert auto.batch_size is None
    assert batch_size_for(auto, 2, {"config": {"batch_size": 11}}) == 11  # a planned 2D model's batch of patches
    assert batch_size_for(auto, 2, {}) == 16
    assert batch_size_for(auto, 3, {"config": {"batch_size": 3}}) == 3
    assert batch_size_for(auto, 3, {}) == 2
    assert batch_size_for(TrainConfig(batch_size=5), 3, {"config": {"batch_size": 3}}) == 5
    with pytest.raises(SegLoopError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_augmentation_auto_is_the_parents_else_the_defaults():
    from unet_engine.training.config import AugmentConfig, augment_for

    no_mirror = {"config": {"augment": {"p_flip": 0.5, "flip_axes": []}}}
    assert augment_for(TrainConfig(), no_mirror).flip_axes == []  # the plan turned mirroring off: it stays off
    assert augment_for(TrainConfig(), {}) == AugmentConfig()
    assert augment_for(TrainConfig(augment={"flip_axes": [1]}), no_mirror).flip_axes == [1]  # explicit wins
    assert augment_for(TrainConfig(), {"config": {"augment": {"bogus": 1}}}) == AugmentConfig()


def test_a_fine_tune_keeps_the_sampling_of_the_model_it_starts_from(tmp_path, one_torch_thread):
    """A planned first model (patches, small batch, no mirroring) fine-tuned with default
    settings trains the way it was made, not on 16 whole mirrored slices."""
    from tests.train_helpers import make_dataset, tiny_config
    from unet_engine.progress import run_generator
    from unet_engine.registry.versions import ModelRegistry
    from unet_engine.training.fine_tune import fine_tune

    ds = make_dataset(tmp_path, limit=3)
    reg = ModelRegistry(tmp_path / "models")
    first = run_generator(fine_tune(tiny_config(max_steps=2, patch_size=[32, 32], batch_size=3,
                                                augment={"flip_axes": []}), dataset=ds, registry=reg,
                                    from_version="scratch"))
    plain = tiny_config(max_steps=2).replace(batch_size=None, patch_size=None)
    assert plain.augment is None
    second = run_generator(fine_tune(plain, dataset=ds, registry=reg, from_version=first.version))
    used = reg.get(second.version)
    assert used.config["batch_size"] == 3 and used.config["augment"]["flip_axes"] == []
    _model, card = reg.load(second.version)
    assert card.training["patch_size"] == [32, 32]
