"""Projects in the engine: create, open, label schemas, delete, and every bad input the
issue names (duplicate and invalid names, corrupt or newer project.json, absolute paths,
a copied folder, a killed creation, deleting the open project, contradicting labels)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import threading

import numpy as np
import pytest

from tests.train_helpers import HIPPO, start_python, tiny_config, tiny_model
from unet_engine.errors import ProjectError, SegLoopError
from unet_engine.projects import ProjectStore, add_labels, load_project


@pytest.fixture
def store(tmp_path) -> ProjectStore:
    return ProjectStore(tmp_path / "projects")


def _case(n: str = "hippocampus_001"):
    from unet_engine.io.volume_io import read_volume

    image = read_volume(HIPPO / "imagesTr" / f"{n}.nii.gz")
    return image, read_volume(HIPPO / "labelsTr" / f"{n}.nii.gz").array


def test_create_open_and_list(store):
    p = store.create("Spleen CT", modality="ct", labels={1: "spleen"}, colours={1: (10, 20, 30)})
    assert (p.name, p.modality, p.labels, p.colours, p.schema_version) == ("Spleen CT", "CT", {1: "spleen"},
                                                                           {1: (10, 20, 30)}, 1)
    assert p.folder == store.root / "Spleen CT" and p.dataset().labels == {1: "spleen"}
    assert p.dataset().modality == "CT" and p.registry().list() == []
    assert p.model_path() is None and p.start_version() is None  # an empty project needs a first model
    store.create("ACDC", modality="MRI", labels={1: "right ventricle", 2: "myocardium"})
    assert store.names() == ["ACDC", "Spleen CT"] and [q.name for q in store.list()] == ["ACDC", "Spleen CT"]
    assert store.open("spleen ct").name == "Spleen CT"  # names are case-insensitive
    assert store.open("ACDC").modality == "MR"
    data = json.loads(p.project_file.read_text())
    assert data["dataset"] == "dataset" and data["registry"] == "models"  # relative paths only
    mode = stat.S_IMODE(os.stat(p.project_file).st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the user's normal permissions, not a temp file's 0600


@pytest.mark.parametrize("name, fragment", [
    ("a/b", "'/'"), ("a\\b", "'\\\\'"), ("what?", "'?'"), ("", "needs a name"), (" lead", "space"),
    ("trail.", "ends with '.'"), (".hidden", "starts with '.'"), ("..", "starts with '.'"), ("CON", "reserved"),
    ("nul.txt", "reserved"), ("x" * 65, "longer than 64"), ("tab\there", "'\\t'"),
])
def test_a_name_that_is_not_a_folder_name_is_refused(store, name, fragment):
    with pytest.raises(ProjectError) as err:
        store.create(name, modality="CT", labels={1: "spleen"})
    assert fragment in str(err.value)
    assert store.names() == []


def test_two_projects_with_one_name(store):
    store.create("Spleen CT", modality="CT", labels={1: "spleen"})
    for name in ("Spleen CT", "SPLEEN ct"):
        with pytest.raises(ProjectError, match="already exists"):
            store.create(name, modality="MR", labels={1: "x"})
    assert store.open("Spleen CT").modality == "CT"


@pytest.mark.parametrize("labels, why", [
    ({}, "at least one label"), ({1: ""}, "no name"), ({1: "a", 2: "A"}, "more than one value"),
    ({70000: "a"}, "out of range"), ([(1, "a"), (1, "b")], "more than once"), ({"x": "a"}, "not a whole number"),
])
def test_bad_labels(store, labels, why):
    with pytest.raises(ProjectError, match=why):
        store.create("P", modality="CT", labels=labels)


def test_unknown_modality(store):
    with pytest.raises(ProjectError, match="unknown modality 'PET'"):
        store.create("P", modality="PET", labels={1: "x"})


def test_start_from_the_bundled_model(store):
    from unet_engine.paths import BUNDLED_MODELS

    p = store.create("Hippo", modality="MR", start_model="default")
    assert p.labels == {1: "anterior", 2: "posterior"} and p.colours[1] == (230, 25, 75)
    assert p.model_path() == BUNDLED_MODELS / "default" and p.start_version() == "default"
    assert not (p.registry_root / "versions").exists()  # referenced, not copied: it ships with SegLoop
    with pytest.raises(ProjectError, match="calls label 1 'anterior', not 'spleen'"):
        store.create("Spleen", modality="CT", labels={1: "spleen"}, start_model="default")
    with pytest.raises(ProjectError, match="predicts label 2 'posterior'"):
        store.create("Half", modality="MR", labels={1: "anterior"}, start_model="default")
    extra = store.create("More", modality="MR", labels={1: "anterior", 2: "posterior", 3: "tail"},
                         start_model="default")
    assert extra.labels[3] == "tail"  # extra labels are allowed: the network grows at the next fine-tune


def test_start_from_a_checkpoint_folder_copies_it_in(store, tmp_path):
    from unet_engine.model.checkpoint import save_checkpoint

    model, card = tiny_model()
    src = save_checkpoint(model, card, tmp_path / "ckpt")
    p = store.create("Imported", modality="MR", start_model=str(src))
    reg = p.registry()
    assert [v.version for v in reg.list()] == ["v0001"] and reg.active == "v0001"
    assert p.model_path() == p.registry_root / "versions" / "v0001" and p.start_version() == "v0001"
    shutil.rmtree(src)
    reg.load("active")  # the project holds its own copy


def _write_json(path, data):
    path.write_text(json.dumps(data))


def test_corrupt_newer_or_absolute_project_json_is_refused_and_listed_as_broken(store):
    p = store.create("P", modality="CT", labels={1: "spleen"})
    good = json.loads(p.project_file.read_text())
    cases = [
        ("{not json", "corrupt"),
        ({**good, "format_version": 99}, "newer SegLoop"),
        ({**good, "dataset": "/home/someone/segloop/dataset"}, "relative to its folder"),
        ({**good, "registry": "../other/models"}, "relative to its folder"),
        ({**good, "label_schemas": []}, "must run 1, 2, 3"),
        ({k: v for k, v in good.items() if k != "modality"}, "incomplete"),
        ([1, 2], "not a JSON object"),
    ]
    for content, why in cases:
        if isinstance(content, str):
            p.project_file.write_text(content)
        else:
            _write_json(p.project_file, content)
        with pytest.raises(ProjectError, match=why) as err:
            store.open("P")
        assert "project.json" in str(err.value)
        entry = store.entries()[0]
        assert entry.project is None and why.split()[0] in entry.error
        assert store.list() == []
    _write_json(p.project_file, good)
    assert store.open("P").labels == {1: "spleen"}


def test_a_project_folder_copied_elsewhere_opens_with_its_data(store, tmp_path):
    from unet_engine.training.setup import run_folder

    p = store.create("Hippo", modality="MR", labels={1: "anterior", 2: "posterior"})
    ds = p.dataset()
    image, label = _case()
    ds.add_case(image, label, case_id="c1")
    model, card = tiny_model()
    p.registry().add_version(model, card, promote=True)
    other = ProjectStore(tmp_path / "elsewhere" / "projects")
    shutil.copytree(p.folder, other.root / "Hippo copy")
    q = other.open("hippo copy")
    assert q.name == "Hippo copy" and q.labels == p.labels
    assert [c.hash for c in q.dataset().cases()] == [c.hash for c in ds.cases()]
    q.dataset().load_case("c1")
    assert q.model_path() == q.registry_root / "versions" / "v0001"
    assert run_folder(q.registry(), q.dataset()).relative_to(q.folder) == run_folder(p.registry(), ds).relative_to(
        p.folder)  # a saved run moves with the project


def test_adding_labels_makes_a_new_schema_version(store):
    p = store.create("Spleen", modality="CT", labels={1: "spleen"})
    p2 = add_labels(p, {2: "vessel"}, colours={2: (1, 2, 3)})
    assert p2.schema_version == 2 and p2.labels == {1: "spleen", 2: "vessel"} and p2.colours[2] == (1, 2, 3)
    assert [s.labels for s in p2.schemas][0] == p.label_list  # the earlier schema is kept as it was
    assert "added 2 'vessel'" in p2.schema.change
    assert p2.dataset().labels == {1: "spleen", 2: "vessel"}
    assert add_labels(p2, {2: "vessel"}).schema_version == 2  # nothing new: no new version
    with pytest.raises(ProjectError, match="label 1 is 'spleen'.*never renamed"):
        add_labels(p2, {1: "liver"})
    with pytest.raises(ProjectError, match="already calls label 2 'vessel'"):
        add_labels(p2, {3: "Vessel"})
    assert load_project(p.folder).schema_version == 2


def test_a_dataset_behind_its_project_is_completed_and_one_that_contradicts_it_refused(store):
    p = store.create("Spleen", modality="CT", labels={1: "spleen"})
    p.dataset()
    # a process killed between project.json and dataset.json: the schema is written, the dataset lags
    from unet_engine.projects.project import LabelSchema, make_labels, now_iso

    p.schemas.append(LabelSchema(2, make_labels({1: "spleen", 2: "vessel"}), now_iso(), "added 2 'vessel'"))
    p.save()
    assert load_project(p.folder).dataset().labels == {1: "spleen", 2: "vessel"}
    meta = json.loads((p.dataset_folder / "dataset.json").read_text())
    meta["labels"]["1"] = "liver"  # edited by hand
    _write_json(p.dataset_folder / "dataset.json", meta)
    with pytest.raises(ProjectError, match="label 1 is 'liver' in the dataset but 'spleen' in the project"):
        load_project(p.folder).dataset()


def test_a_mask_with_a_label_the_project_lacks(store):
    p = store.create("Hippo", modality="MR", labels={1: "anterior"})
    image, label = _case()
    assert p.unknown_values(np.unique(label)) == [2]
    with pytest.raises(SegLoopError, match=r"values \[2\] that are not labels"):
        p.dataset().add_case(image, label)
    p = add_labels(p, {2: "posterior"})
    assert p.unknown_values(np.unique(label)) == []
    p.dataset().add_case(image, label)


def test_delete_moves_to_the_trash_and_refuses_the_open_or_busy_project(store):
    p = store.create("Spleen", modality="CT", labels={1: "spleen"})
    with pytest.raises(ProjectError, match="is open; switch to another project"):
        store.delete("spleen", open_project="Spleen")
    held, release = threading.Event(), threading.Event()

    def hold_dataset_lock():  # e.g. a training run writing to the dataset
        with p.dataset().locked():
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold_dataset_lock)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(ProjectError, match="in use"):
            store.delete("Spleen")
    finally:
        release.set()
        t.join()
    assert store.names() == ["Spleen"]
    trash = store.delete("Spleen")
    assert store.names() == [] and (trash / "project.json").is_file() and trash.parent.name == ".trash"
    with pytest.raises(ProjectError, match="no project named 'Spleen'"):
        store.delete("Spleen")
    assert store.create("Spleen", modality="CT", labels={1: "spleen"}).schema_version == 1


@pytest.mark.parametrize("step", ["project.json", "dataset", "model"])
def test_a_creation_killed_midway_leaves_no_half_project(store, tmp_path, step):
    from unet_engine.model.checkpoint import save_checkpoint

    model, card = tiny_model()
    src = save_checkpoint(model, card, tmp_path / "ckpt")
    proc = start_python(
        "import os, signal\n"
        "from unet_engine.projects import ProjectStore\n"
        "def hook(s):\n"
        "    print('step', s, flush=True)\n"
        f"    if s == {step!r}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"ProjectStore({str(store.root)!r}).create('Half', modality='MR', start_model={str(src)!r}, on_step=hook)\n")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL and f"step {step}" in out, err
    assert any(p.name.startswith(".tmp-") for p in store.root.iterdir())
    again = ProjectStore(store.root)  # the next start removes the remains
    assert again.names() == [] and not any(p.name.startswith(".tmp-") for p in store.root.iterdir())
    assert again.create("Half", modality="MR", start_model=str(src)).registry().active == "v0001"


def test_a_fine_tune_after_adding_a_label_grows_the_network_and_keeps_the_old_outputs(store, one_torch_thread):
    import torch

    from unet_engine.progress import run_generator
    from unet_engine.training.fine_tune import fine_tune

    p = store.create("Hippo", modality="MR", labels={1: "anterior", 2: "posterior"})
    ds = p.dataset()
    for n in ("hippocampus_001", "hippocampus_003", "hippocampus_148"):
        image, label = _case(n)
        ds.add_case(image, label, case_id=n)
    model, card = tiny_model()
    v1 = p.registry().add_version(model, card, promote=True).version
    p = add_labels(p, {3: "tail"})
    image, label = _case("hippocampus_149")
    label = label.copy()
    label[label == 2] = 3  # a newly labelled structure
    p.dataset().add_case(image, label, case_id="tail_case")
    res = run_generator(fine_tune(tiny_config(max_steps=2, steps_per_epoch=2), dataset=p.dataset(),
                                  registry=p.registry(), from_version=v1))
    new_model, new_card = p.registry().load(res.version)
    assert new_card.spec.num_classes == 4 and new_card.labels == {0: "background", 1: "anterior", 2: "posterior",
                                                                  3: "tail"}
    assert new_model(torch.zeros(1, 1, 16, 16)).shape[1] == 4
    old_model, old_card = p.registry().load(v1)
    assert old_card.spec.num_classes == 3  # the older version keeps working as it was


def test_more_classes_keeps_every_weight_of_the_old_ones():
    import torch

    from unet_engine.model.network import with_more_classes

    model, _ = tiny_model()
    model.eval()
    grown = with_more_classes(model, 5).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(grown(x)[:, :3], model(x))  # the old classes' logits are unchanged
    with pytest.raises(ValueError, match="cannot shrink"):
        with_more_classes(model, 2)


def test_a_project_run_never_starts_from_the_bundled_model_of_other_labels(store, one_torch_thread):
    from unet_engine.progress import run_generator
    from unet_engine.training.fine_tune import fine_tune

    p = store.create("Hippo renamed", modality="MR", labels={1: "head", 2: "tail"})
    ds = p.dataset()
    for n in ("hippocampus_001", "hippocampus_003", "hippocampus_148"):
        image, label = _case(n)
        ds.add_case(image, label, case_id=n)
    with pytest.raises(SegLoopError, match="bundled default model's labels contradict"):
        run_generator(fine_tune(tiny_config(), dataset=ds, registry=p.registry(), from_version="default"))
    res = run_generator(fine_tune(tiny_config(max_steps=2), dataset=ds, registry=p.registry(), from_version=None))
    assert res.parent is None  # from scratch, not from the hippocampus model
    assert [v.source for v in p.registry().list()] == ["scratch"]  # nothing imported behind the user's back
