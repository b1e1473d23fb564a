"""Model registry: versions, promote/rollback history, delete, compare, crash safety."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from tests.train_helpers import KILL_POINT_HOOK, kill_at_marker, make_dataset, start_python, tiny_model
from unet_engine.model.checkpoint import load_checkpoint, save_checkpoint
from unet_engine.errors import RegistryError
from unet_engine.registry.versions import ModelRegistry, active_checkpoint_path
from unet_engine.training.validation import val_split_rescorer


def _add(reg: ModelRegistry, seed: int, **kw):
    model, card = tiny_model(seed)
    return reg.add_version(model, card, **kw)


def test_versions_promote_rollback_history(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    assert reg.list() == [] and reg.active is None and reg.active_checkpoint_path() is None
    v1 = _add(reg, 1, metrics={"val_mean_dice": 0.5}, promote=True)
    _add(reg, 2, parent=v1.version, metrics={"val_mean_dice": 0.6},
              dataset={"cases": [{"id": "a", "hash": "sha256:x", "split": "train"}]},
              config={"lr": 0.001}, curves={"epoch": [1], "val_mean_dice": [0.6]})
    assert [v.version for v in reg.list()] == ["v0001", "v0002"]
    assert reg.active == "v0001"
    info = reg.get("v0002")
    assert info.parent == "v0001" and info.config == {"lr": 0.001} and info.dataset["cases"][0]["hash"] == "sha256:x"
    assert json.loads((info.path / "version.json").read_text())["curves"]["val_mean_dice"] == [0.6]
    model, card = load_checkpoint(info.path)  # a version folder is a checkpoint folder
    assert card.version == "v0002" and card.parent == "v0001"
    reg.promote("2")
    assert reg.active == "v0002" and reg.get("active").version == "v0002"
    v3 = _add(reg, 3, parent="v0002")
    reg.promote(v3.version)
    assert reg.rollback().version == "v0002"
    assert reg.rollback().version == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    actions = [(h["action"], h["version"]) for h in reg.history()]
    assert actions == [("promote", "v0001"), ("promote", "v0002"), ("promote", "v0003"), ("rollback", "v0002"),
                       ("rollback", "v0001")]
    with pytest.raises(RegistryError, match="no model version 'v0009'"):
        reg.get("v0009")


def test_delete_refuses_active_and_ids_are_not_reused(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    _add(reg, 1, promote=True)
    _add(reg, 2)
    with pytest.raises(RegistryError, match="active model"):
        reg.delete("v0001")
    reg.delete("v0002")
    assert [v.version for v in reg.list()] == ["v0001"]
    assert _add(reg, 3).version == "v0003"
    load_checkpoint(reg.active_checkpoint_path())


def test_module_level_active_path_and_resolver(tmp_path, monkeypatch):
    from unet_engine.registry.resolver import resolve_model_path
    from unet_engine.paths import segloop_home

    assert active_checkpoint_path() is None
    reg = ModelRegistry()  # the default root: SEGLOOP_HOME/models (a temp folder in tests)
    assert reg.root == segloop_home() / "models"
    _add(reg, 1, promote=True)
    assert active_checkpoint_path() == reg.root / "versions" / "v0001"
    assert resolve_model_path("default") == reg.root / "versions" / "v0001"
    (reg.root / "active.json").write_text("{not json")  # a damaged pointer never raises
    assert active_checkpoint_path() is None


def test_import_checkpoint_and_bundled_default(tmp_path):
    model, card = tiny_model(5)
    card.name = "bundled"
    bundled = save_checkpoint(model, card, tmp_path / "bundled" / "default")
    reg = ModelRegistry(tmp_path / "models")
    first = reg.ensure_default(bundled)
    assert first.version == "v0001" and first.source == "bundled-default" and reg.active == "v0001"
    assert reg.ensure_default(bundled) is None  # only into an empty registry
    loaded, _ = reg.load("v0001")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    other = reg.import_checkpoint(bundled, name="copy")
    assert other.version == "v0002" and other.name == "copy" and reg.active == "v0001"


def test_compare_side_by_side_and_on_val_split(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    _add(reg, 1, metrics={"val_mean_dice": 0.5, "val_dice": {"anterior": 0.4, "posterior": 0.6}})
    _add(reg, 2, metrics={"val_mean_dice": 0.7, "val_dice": {"anterior": 0.8, "posterior": 0.6}})
    res = reg.compare("v0001", "v0002")
    rows = {r["metric"]: r for r in res["rows"]}
    assert rows["val_mean_dice"]["delta"] == pytest.approx(0.2)
    assert rows["val_dice.anterior"]["a"] == 0.4 and rows["val_dice.anterior"]["b"] == 0.8
    ds = make_dataset(tmp_path, limit=5)
    res = reg.compare("v0001", "v0002", rescore=val_split_rescorer(reg, ds))
    assert res["metrics_a"]["val_cases"] == len(ds.val_cases()) == 1
    assert 0.0 <= res["metrics_b"]["val_dice"]["anterior"] <= 1.0


def test_partial_version_folders_are_invisible(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    _add(reg, 1, promote=True)
    junk = reg.versions_dir / ".tmp-deadbeef"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"half")
    assert [v.version for v in reg.list()] == ["v0001"]
    _add(reg, 2)
    assert not junk.exists()


# (the loop's iteration k, the write to stop at); the versions a kill leaves visible
@pytest.mark.parametrize("k, point, versions", [
    (4, "version", 3),  # v0004 complete in its temp folder, not renamed: invisible
    (5, "active", 5),  # v0005 added; the promotion's active.json not renamed: the old one stays
])
def test_kill9_during_registry_writes_keeps_active_loadable(tmp_path, k, point, versions):
    root = tmp_path / "models"
    writer = start_python(
        KILL_POINT_HOOK +
        "import os\n"
        "from tests.train_helpers import tiny_model\n"
        "from unet_engine.registry.versions import ModelRegistry\n"
        f"reg = ModelRegistry({str(root)!r})\n"
        "now = {'k': 0}\n"
        "_rename, _replace = os.rename, os.replace\n"
        "def hooked(real, kind):\n"
        "    def move(src, dst, *a, **kw):\n"
        "        name, parent = os.path.basename(os.fspath(dst)), os.path.basename(os.path.dirname(os.fspath(dst)))\n"
        "        hit = ((kind == 'version' and parent == 'versions' and name.startswith('v'))\n"
        "               or (kind == 'active' and name == 'active.json'))\n"
        f"        if now['k'] == {k} and kind == {point!r} and hit:\n"
        "            kill_point(f'{now} active={reg.active}')\n"
        "        return real(src, dst, *a, **kw)\n"
        "    return move\n"
        "os.rename, os.replace = hooked(_rename, 'version'), hooked(_replace, 'active')\n"
        "while True:\n"
        "    now['k'] += 1\n"
        "    model, card = tiny_model(now['k'])\n"
        "    v = reg.add_version(model, card, parent=reg.active, promote=(now['k'] % 2 == 1))\n"
        "    print(v.version, flush=True)\n"
        "    if now['k'] % 3 == 0:\n"
        "        reg.rollback()\n")
    lines = kill_at_marker(writer)
    assert f"'k': {k}}}" in lines[-1], lines
    assert writer.returncode == -signal.SIGKILL
    reg = ModelRegistry(root)
    assert [v.version for v in reg.list()] == [f"v{n:04d}" for n in range(1, versions + 1)]
    assert f"active={reg.active}" in lines[-1]  # the active version the killed write left in place
    active = reg.active_checkpoint_path()
    assert active is not None
    load_checkpoint(active)
    for v in reg.list():  # every visible version is complete
        load_checkpoint(v.path)
        assert (v.path / "version.json").is_file()
    last = int(reg.list()[-1].version[1:])
    v = _add(reg, 99, promote=True)  # the registry keeps working after the crash
    assert reg.active == v.version and int(v.version[1:]) > last
