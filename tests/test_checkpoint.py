"""Checkpoints: round trip, atomic replace, and refusal of pickles / damaged files / wrong cards."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch

from unet_engine.model import checkpoint as ckpt
from unet_engine.model.checkpoint import ModelCard, load_card, load_checkpoint, save_checkpoint
from unet_engine.errors import CheckpointError
from unet_engine.model.network import ModelSpec, build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_ish(spec: ModelSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(spec).train()
    with torch.no_grad():
        model(torch.randn(4, spec.in_channels, 16, 16) * 2 + 1)  # non-default BatchNorm statistics
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    spec = ModelSpec(base_width=4, depth=2)
    model = _trained_ish(spec)
    card = ModelCard(spec=spec, labels={0: "background", 1: "anterior", 2: "posterior"},
                     colours={1: [255, 0, 0], 2: [0, 255, 0]}, training={"epochs": 3}, metrics={"dice": 0.9},
                     version="3", parent="2", name="hippo", notes="test")
    folder = save_checkpoint(model, card, tmp_path / "ckpt")
    return model, card, folder


def test_round_trip_identical_outputs(saved):
    model, card, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.safetensors"]
    x = torch.randn(2, 1, 21, 19)
    for path in (folder, folder / "model.safetensors", folder / "card.json"):
        loaded, loaded_card = load_checkpoint(path)
        assert not loaded.training
        with torch.inference_mode():
            assert torch.equal(loaded(x), model(x))
        assert loaded_card == card
    assert load_card(folder).labels == {0: "background", 1: "anterior", 2: "posterior"}
    assert load_card(folder).colours[1] == [255, 0, 0]


def test_card_json_is_readable(saved):
    _, card, folder = saved
    data = json.loads((folder / "card.json").read_text())
    assert data["spec"]["base_width"] == 4 and data["labels"]["1"] == "anterior"
    assert ModelCard.from_json(card.to_json()) == card


def test_replace_is_atomic_and_leaves_no_temp(saved, tmp_path):
    model, card, folder = saved
    (folder / "TRAINING.md").write_text("how this model was trained")
    card2 = ModelCard(spec=card.spec, labels=card.labels, version="4", parent="3")
    save_checkpoint(model, card2, folder)
    assert load_card(folder).version == "4"
    assert (folder / "TRAINING.md").read_text() == "how this model was trained"  # extra files survive
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp or backup siblings


def test_replacing_keeps_one_copy_when_the_second_rename_fails(saved, tmp_path, monkeypatch):
    """Old checkpoint aside, new one in: if moving the new one in fails the old one is restored."""
    model, card, folder = saved
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name.startswith(".ckpt.tmp-"):
            raise OSError("disk on fire")
        return real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", flaky_rename)
    with pytest.raises(CheckpointError, match="disk on fire"):
        save_checkpoint(model, ModelCard(spec=card.spec, version="9"), folder)
    assert load_card(folder).version == "3"  # old one back in place
    monkeypatch.setattr(ckpt.os, "rename", real_rename)
    save_checkpoint(model, ModelCard(spec=card.spec, version="9"), folder)
    assert load_card(folder).version == "9"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_interrupted_swap_is_repaired(saved, tmp_path):
    """A crash between 'move old aside' and 'move new in' leaves only the backup: loading restores it."""
    model, _, folder = saved
    os.rename(folder, tmp_path / ".ckpt.old-deadbeef")
    loaded, card = load_checkpoint(folder)
    assert card.version == "3" and folder.is_dir()


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    spec = ModelSpec(base_width=2, depth=1)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a SegLoop checkpoint"):
        save_checkpoint(build_model(spec), ModelCard(spec=spec), tmp_path / "photos")
    assert (tmp_path / "photos" / "holiday.jpg").exists()


def test_refuses_pickled_weights(saved):
    model, _, folder = saved
    torch.save(model.state_dict(), folder / "model.safetensors")  # zip-based pickle
    with pytest.raises(CheckpointError, match="pickle") as exc:
        load_checkpoint(folder)
    assert "model.safetensors" in str(exc.value)
    torch.save(model.state_dict(), folder / "model.safetensors", _use_new_zipfile_serialization=False)  # raw pickle
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(folder)


def test_refuses_truncated_weights(saved):
    _, _, folder = saved
    w = folder / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as exc:
        load_checkpoint(folder)
    assert str(w) in str(exc.value)
    w.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(folder)
    w.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(folder)


def test_refuses_corrupted_header(saved):
    _, _, folder = saved
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 : 8 + 10] = b"#" * 10  # garbage inside the JSON header
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(folder)
    w.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(folder)


def test_refuses_nan_weights(saved, tmp_path):
    model, card, _ = saved
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    folder = save_checkpoint(model, card, tmp_path / "nan")
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(folder)


def test_wrong_card_is_reported(saved, tmp_path):
    _, _, folder = saved
    card = json.loads((folder / "card.json").read_text())
    card["spec"]["base_width"] = 8
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="wrong card"):
        load_checkpoint(folder)


def test_missing_and_mismatched_tensors(saved, tmp_path):
    from safetensors.torch import save_file

    model, card, folder = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    dropped = dict(state)
    dropped.pop("head.weight")
    save_file(dropped, str(folder / "model.safetensors"))  # no spec metadata: the tensor check must catch it
    with pytest.raises(CheckpointError, match="missing tensor.*head.weight"):
        load_checkpoint(folder)
    state["head.weight"] = torch.zeros(5, 4, 1, 1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(folder)


def test_bad_or_missing_card(saved, tmp_path):
    _, _, folder = saved
    (folder / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    (folder / "card.json").write_text(json.dumps({"labels": {}}))
    with pytest.raises(CheckpointError, match="lacks the field 'spec'"):
        load_checkpoint(folder)
    (folder / "card.json").write_text(json.dumps({"spec": {"dims": 5}}))
    with pytest.raises(CheckpointError, match="dims"):
        load_checkpoint(folder)
    (folder / "card.json").unlink()
    with pytest.raises(CheckpointError, match="no card.json"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_save_refuses_card_that_does_not_match_model(tmp_path):
    model = build_model(ModelSpec(base_width=4, depth=2))
    with pytest.raises(CheckpointError, match="differs"):
        save_checkpoint(model, ModelCard(spec=ModelSpec(base_width=8, depth=2)), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_load_on_device_and_resolver(saved, tmp_path, monkeypatch):
    from unet_engine import paths
    from unet_engine.registry import resolver as model_resolver

    _, _, folder = saved
    assert model_resolver.resolve_model_path(str(folder)) == folder
    assert model_resolver.resolve_model_path(str(folder / "card.json")) == folder
    with pytest.raises(CheckpointError, match="no such model"):
        model_resolver.resolve_model_path(str(tmp_path / "missing"))
    monkeypatch.setattr(model_resolver, "_registry_active", lambda _registry: None)
    monkeypatch.setattr(paths, "BUNDLED_MODELS", tmp_path / "no_models")
    with pytest.raises(CheckpointError, match="no default model"):
        model_resolver.resolve_model_path("default")
    monkeypatch.setattr(paths, "BUNDLED_MODELS", tmp_path)
    os.rename(folder, tmp_path / "default")
    assert model_resolver.resolve_model_path(None) == tmp_path / "default"
    monkeypatch.setattr(model_resolver, "_registry_active", lambda _registry: tmp_path / "default" / "model.safetensors")
    assert model_resolver.resolve_model_path("default") == tmp_path / "default"
