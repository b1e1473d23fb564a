"""Untrusted model folders (``--model PATH``, Import model) are checked before anything is
parsed deeply, built or allocated (issue 18): each bad folder is a copy of the bundled
default model with one mutation, refused with a CheckpointError naming the file and the
problem; neighbouring good values still load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from unet_engine import paths
from unet_engine.model.checkpoint import load_card, load_checkpoint
from unet_engine.cli.main import main
from unet_engine.errors import CheckpointError
from unet_engine.model.network import ModelSpec, UNet
from unet_engine.model.card_checks import MAX_CARD_BYTES, estimate_parameters, json_depth

BUNDLED = paths.BUNDLED_MODELS / "default"
HIPPO_IMAGE = Path(__file__).parent / "data" / "hippocampus" / "imagesTr"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED, folder)
    return folder


def _card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text(encoding="utf-8"))


def _write_card(folder: Path, card: dict) -> None:
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")


def _edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        card = _card(folder)
        fn(card)
        _write_card(folder, card)

    return mutate


def _raw_notes(raw: str) -> Callable[[Path], None]:
    """Put ``raw`` JSON text (not a string) as the card's notes."""

    def mutate(folder: Path) -> None:
        card = _card(folder)
        card.pop("notes", None)
        text = json.dumps(card)
        (folder / "card.json").write_text(text[:-1] + ', "notes": ' + raw + "}", encoding="utf-8")

    return mutate


def _set(section: str, key: str, value) -> Callable[[Path], None]:
    return _edit(lambda c: c[section].__setitem__(key, value))


def _labels(n: int) -> Callable[[Path], None]:
    return _edit(lambda c: c.__setitem__("labels", {str(i): f"l{i}" for i in range(n)}))


def _replace_file(name: str, how: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        target = folder / name
        target.unlink()
        if how == "fifo":
            os.mkfifo(target)
        elif how == "zero":
            target.symlink_to("/dev/zero")
        elif how == "folder":
            target.mkdir()

    return mutate


def _oversized_card(folder: Path) -> None:
    card = _card(folder)
    card["notes"] = "x" * (MAX_CARD_BYTES + 10)
    _write_card(folder, card)


def _padded_weights(folder: Path) -> None:
    with open(folder / "model.safetensors", "ab") as fh:
        fh.truncate((folder / "model.safetensors").stat().st_size + 40 * 1024 * 1024)  # sparse


BAD: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (mutation, file named in the message, regex of the problem)
    "notes nested 200,000 deep (lists)": (_raw_notes("[" * 200_000 + "]" * 200_000), "card.json", "nested too deeply"),
    "notes with 50,000 nested objects": (_raw_notes('{"a": ' * 50_000 + "1" + "}" * 50_000), "card.json", "nested too deeply"),
    "notes nested 40 deep (under the recursion limit)": (_raw_notes("[" * 40 + "]" * 40), "card.json", "nested too deeply"),
    "notes an object": (_raw_notes('{"a": 1}'), "card.json", "notes must be text"),
    "1,000,000 labels": (_labels(1_000_000), "card.json", "implausibly large|labels"),
    "1,000 labels": (_labels(1_000), "card.json", "1,000 labels"),
    "4 labels for 3 classes": (_labels(4), "card.json", "4 labels"),
    "label 3 in a 3-class network": (_edit(lambda c: c.__setitem__("labels", {"0": "bg", "1": "a", "3": "b"})), "card.json",
                                     "label 3"),
    "label -1": (_edit(lambda c: c.__setitem__("labels", {"0": "bg", "-1": "x"})), "card.json", "label -1"),
    "label key not a number": (_edit(lambda c: c.__setitem__("labels", {"0": "bg", "one": "x"})), "card.json",
                               "not a label number"),
    "colour for label 7": (_set("colours", "7", [1, 2, 3]), "card.json", "label 7"),
    "colour value 300": (_set("colours", "1", [300, 0, 0]), "card.json", "0..255"),
    "base_width 1,000,000": (_set("spec", "base_width", 1_000_000), "card.json", "base_width must be 1..512"),
    "base_width 0": (_set("spec", "base_width", 0), "card.json", "base_width must be 1..512"),
    "base_width 16.5": (_set("spec", "base_width", 16.5), "card.json", "base_width must be a whole number"),
    "base_width a string": (_set("spec", "base_width", "16"), "card.json", "base_width must be a whole number"),
    "base_width 512, depth 8": (_edit(lambda c: c["spec"].update(base_width=512, depth=8)), "card.json", "parameters"),
    "depth 9": (_set("spec", "depth", 9), "card.json", "depth must be 0..8"),
    "num_classes 1": (_set("spec", "num_classes", 1), "card.json", "num_classes must be 2..256"),
    "num_classes 100,000": (_set("spec", "num_classes", 100_000), "card.json", "num_classes must be 2..256"),
    "in_channels 10,000": (_set("spec", "in_channels", 10_000), "card.json", "in_channels must be 1..64"),
    "target spacing 0.001 mm": (_set("preprocessing", "target_spacing", [0.001, 0.001, 0.001]), "card.json", "target_spacing"),
    "target spacing 0.009 mm on one axis": (_set("preprocessing", "target_spacing", [1.0, 1.0, 0.009]), "card.json",
                                             "target_spacing"),
    "target spacing 1000 mm": (_set("preprocessing", "target_spacing", [1000, None, None]), "card.json", "target_spacing"),
    "target spacing two values": (_set("preprocessing", "target_spacing", [1.0, 1.0]), "card.json", "target_spacing"),
    "training patch 100,000": (_set("training", "patch_size", [100_000, 56, 40]), "card.json", "patch_size"),
    "training patch 0": (_set("training", "patch_size", [0, 56, 40]), "card.json", "patch_size"),
    "card over the size limit": (_oversized_card, "card.json", "implausibly large"),
    "card a named pipe": (_replace_file("card.json", "fifo"), "card.json", "named pipe"),
    "card a symlink to /dev/zero": (_replace_file("card.json", "zero"), "card.json", "device"),
    "card a folder": (_replace_file("card.json", "folder"), "card.json", "folder"),
    "weights a named pipe": (_replace_file("model.safetensors", "fifo"), "model.safetensors", "named pipe"),
    "weights a symlink to /dev/zero": (_replace_file("model.safetensors", "zero"), "model.safetensors", "device"),
    "weights a folder": (_replace_file("model.safetensors", "folder"), "model.safetensors", "folder"),
    "weights far bigger than the spec explains": (_padded_weights, "model.safetensors", "implausibly large"),
}

GOOD: dict[str, Callable[[Path], None]] = {
    "bundled as is": lambda folder: None,
    "target spacing at the bounds": _set("preprocessing", "target_spacing", [0.01, 100, None]),
    "fewer labels than classes": _edit(lambda c: c.__setitem__("labels", {"0": "background", "1": "anterior"})),
    "long notes text": _raw_notes('"' + "n" * 1000 + '"'),
    "weights a symlink to a regular file": lambda folder: (
        (folder / "model.safetensors").rename(folder / "real.safetensors"),
        (folder / "model.safetensors").symlink_to(folder / "real.safetensors"),
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_model_folder_is_refused(case, tmp_path):
    mutate, named, problem = BAD[case]
    folder = _copy(tmp_path)
    mutate(folder)
    with pytest.raises(CheckpointError, match=problem) as info:
        load_checkpoint(folder, "cpu")
    message = str(info.value)
    assert named in message and "\n" not in message and len(message) < 600, message
    if named == "card.json":  # the card alone is refused as well
        with pytest.raises(CheckpointError, match=problem):
            load_card(folder)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(GOOD))
def test_good_model_folder_still_loads(case, tmp_path):
    folder = _copy(tmp_path)
    GOOD[case](folder)
    model, card = load_checkpoint(folder, "cpu")
    assert card.spec.num_classes == 3 and isinstance(model, UNet)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["notes with 50,000 nested objects", "base_width 1,000,000", "weights a named pipe",
                                  "target spacing 0.001 mm"])
def test_predict_with_a_bad_model_exits_2_with_one_line(case, tmp_path, capsys):
    mutate, named, problem = BAD[case]
    folder = _copy(tmp_path)
    mutate(folder)
    image = sorted(HIPPO_IMAGE.glob("*.nii.gz"))[0]
    out = tmp_path / "o.nii.gz"
    assert main(["predict", "--model", str(folder), str(image), str(out), "--device", "cpu", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segloop predict: error:") and named in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "spec",
    [ModelSpec(dims=3, base_width=16, depth=3), ModelSpec(dims=2, base_width=64, depth=4),
     ModelSpec(dims=2, in_channels=5, num_classes=4, base_width=8, depth=0, upsample="bilinear", context_slices=2),
     ModelSpec(dims=2, num_classes=2, base_width=1, depth=8)],
)
def test_parameter_estimate_is_close(spec):
    actual = sum(v.numel() for v in UNet(spec).state_dict().values())
    estimate = estimate_parameters(spec.dims, spec.in_channels, spec.num_classes, spec.base_width, spec.depth)
    assert 0.9 * actual <= estimate <= 1.1 * actual


def test_json_depth_is_iterative():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert json_depth(deep) == 5001 and json_depth({"a": [1, {"b": 2}]}) == 3 and json_depth(3) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["base_width 1,000,000", "weights a symlink to /dev/zero"])
def test_import_model_refuses_a_bad_folder(case, tmp_path):
    from unet_engine.registry.versions import ModelRegistry

    mutate, named, problem = BAD[case]
    folder = _copy(tmp_path)
    mutate(folder)
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(CheckpointError, match=problem):
        registry.import_checkpoint(folder)
    assert registry.list() == []
