"""End to end on real data: overfit a small 2D U-Net on two hippocampus cases (MSD Task04),
then segment them through ``predict_volume``, ``segloop predict`` and ``segloop eval``.

The training loop lives here on purpose (the real trainer is ``unet_engine.training.fine_tune``):
it uses the engine's preprocessing and loss, so what is checked is that training and
inference agree. About 10-20 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_engine.model.checkpoint import ModelCard, save_checkpoint
from unet_engine.cli.main import main
from unet_engine.inference.predict import predict_volume
from unet_engine.io.volume_io import read_mask, read_volume
from unet_engine.training.losses import DiceCELoss
from unet_engine.metrics import dice
from unet_engine.model.network import ModelSpec, build_model, required_multiple
from unet_engine.model.preprocessing import pad_to_multiple, prepare_image, prepare_label, slice_axis_for_spacing, slice_stack
from unet_engine.progress import run_generator

HIPPO = Path(__file__).parent / "data" / "hippocampus"
CASES = ("hippocampus_001", "hippocampus_003")  # 001 is stored as uint8, 003 as float32
LABELS = {0: "background", 1: "anterior", 2: "posterior"}


def _slices(case: str, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    vol = read_volume(HIPPO / "imagesTr" / f"{case}.nii.gz")
    lab = read_mask(HIPPO / "labelsTr" / f"{case}.nii.gz", like=vol)
    axis = slice_axis_for_spacing(vol.spacing)
    m = required_multiple(card.spec)
    img, _ = pad_to_multiple(prepare_image(vol, card), m, axes=[a for a in range(3) if a != axis], mode="edge")
    lab, _ = pad_to_multiple(prepare_label(lab, card), m, axes=[a for a in range(3) if a != axis], mode="edge")
    return slice_stack(img, axis, card.spec.context_slices), slice_stack(lab, axis)[:, 0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = ModelSpec(dims=2, base_width=8, depth=3)
    card = ModelCard(spec=spec, preprocessing={"mode": "mr"}, labels=LABELS, name="overfit-test")
    xs, ys = zip(*(_slices(c, card) for c in CASES))
    h, w = max(x.shape[2] for x in xs), max(x.shape[3] for x in xs)
    x = torch.from_numpy(np.concatenate([np.pad(a, ((0, 0), (0, 0), (0, h - a.shape[2]), (0, w - a.shape[3])), mode="edge")
                                         for a in xs]))
    y = torch.from_numpy(np.concatenate([np.pad(a, ((0, 0), (0, h - a.shape[1]), (0, w - a.shape[2])), mode="edge")
                                         for a in ys]).astype(np.int64))
    model = build_model(spec).train()
    steps = 250
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps, pct_start=0.1)
    loss_fn = DiceCELoss(spec.num_classes)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (16,), generator=gen)
        xb, yb = x[idx], y[idx]
        for dim in (-2, -1):  # random mirroring, so flip test-time augmentation is valid for this model
            f = torch.rand(len(idx), generator=gen) < 0.5
            xb[f], yb[f] = xb[f].flip(dim), yb[f].flip(dim)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    # the trainer's layout: TTA reads the flip axes the model was trained with from here
    card.training = {"steps": steps, "final_loss": float(loss.detach()),
                     "config": {"augment": {"p_flip": 0.5, "flip_axes": None}}}
    torch.set_num_threads(n_threads)
    return save_checkpoint(model, card, tmp_path_factory.mktemp("models") / "overfit")


@pytest.mark.slow
def test_overfit_predict_volume(trained):
    from unet_engine.model.checkpoint import load_checkpoint

    model, card = load_checkpoint(trained)
    for case in CASES:
        vol = read_volume(HIPPO / "imagesTr" / f"{case}.nii.gz")
        ref = read_mask(HIPPO / "labelsTr" / f"{case}.nii.gz", like=vol)
        pred = run_generator(predict_volume(model, card, vol))
        scores = [dice(pred.labels, ref, label) for label in (1, 2)]
        assert min(scores) > 0.8, (case, scores)


@pytest.mark.slow
def test_segloop_predict_writes_a_mask_on_the_scan_grid(trained, tmp_path, capsys):
    case = CASES[0]
    image = HIPPO / "imagesTr" / f"{case}.nii.gz"
    out = tmp_path / "pred.nii.gz"
    rc = main(["predict", "--model", str(trained), str(image), str(out), "--tta", "--device", "cpu", "--threads", "1",
               "--probabilities", str(tmp_path / "probs.npy"), "--uncertainty", str(tmp_path / "unc.nii.gz")])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "wrote" in stdout and "anterior" in stdout
    vol = read_volume(image)
    mask = read_mask(out, like=vol)  # raises if the geometry differs from the scan
    ref = read_mask(HIPPO / "labelsTr" / f"{case}.nii.gz", like=vol)
    assert min(dice(mask, ref, label) for label in (1, 2)) > 0.8
    probs = np.load(tmp_path / "probs.npy")
    assert probs.shape == (3, *vol.shape)
    unc = read_volume(tmp_path / "unc.nii.gz")
    assert unc.same_geometry(vol) and 0 <= unc.array.min() and unc.array.max() <= 1
    assert read_volume(tmp_path / "unc_disagreement.nii.gz").same_geometry(vol)


@pytest.mark.slow
def test_segloop_predict_probabilities_as_image(trained, tmp_path):
    image = HIPPO / "imagesTr" / f"{CASES[1]}.nii.gz"
    rc = main(["predict", "--model", str(trained / "card.json"), str(image), str(tmp_path / "m.nrrd"),
               "--probabilities", str(tmp_path / "p.nrrd"), "--batch-size", "5", "--threads", "1"])
    assert rc == 0
    scan = read_volume(image)
    channels = [read_volume(tmp_path / "p.nrrd", volume_index=c) for c in range(3)]  # one class per component
    assert all(ch.same_geometry(scan) for ch in channels)
    np.testing.assert_allclose(sum(ch.array for ch in channels), 1.0, atol=5e-3)
    argmax = np.argmax(np.stack([ch.array for ch in channels]), 0)
    assert (argmax == read_mask(tmp_path / "m.nrrd", like=scan)).mean() > 0.999  # fp16 ties may differ


@pytest.mark.slow
def test_segloop_eval(trained, tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for case in CASES:  # nnU-Net style names on the images: the _0000 channel suffix is ignored
        shutil.copy(HIPPO / "imagesTr" / f"{case}.nii.gz", images / f"{case}_0000.nii.gz")
        shutil.copy(HIPPO / "labelsTr" / f"{case}.nii.gz", labels / f"{case}.nii.gz")
    (images / "unlabelled.nii.gz").write_bytes((HIPPO / "imagesTr" / f"{CASES[0]}.nii.gz").read_bytes())
    assert main(["eval", "--model", str(trained), "--images", str(images), "--labels", str(labels), "--json", "--tta",
                 "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["cases"]) == set(CASES)
    for name in ("anterior", "posterior"):
        assert result["mean"][name]["dice"] > 0.8
        assert result["mean"][name]["hd95"] < 5.0
    assert main(["eval", "--model", str(trained), "--images", str(images), "--labels", str(labels), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("anterior=") == 3 and text.splitlines()[-1].startswith("mean")


def test_cli_errors_are_one_line(tmp_path, capsys):
    image = HIPPO / "imagesTr" / f"{CASES[0]}.nii.gz"
    assert main(["predict", "--model", str(tmp_path / "missing"), str(image), str(tmp_path / "o.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segloop predict: error:") and "missing" in err and "\n" not in err
    bad = tmp_path / "bad"
    bad.mkdir()
    spec = ModelSpec(base_width=2, depth=1)
    torch.save(build_model(spec).state_dict(), bad / "model.safetensors")
    (bad / "card.json").write_text(ModelCard(spec=spec).to_json())
    assert main(["predict", "--model", str(bad), str(image), str(tmp_path / "o.nii.gz")]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["predict", "--model", str(bad), str(image), str(tmp_path / "o.nii.gz"), "--batch-size", "0"]) == 2
    assert not (tmp_path / "o.nii.gz").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--model", str(bad), "--images", str(empty), "--labels", str(empty)]) == 2
    assert "no image" in capsys.readouterr().err
