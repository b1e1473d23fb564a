"""The device-side sliding window and batched inference (unet_engine/inference/sliding_window.py,
inference_runner.py): coverage of the Gaussian blend on odd shapes, batch-size independence,
window sizing, on-device normalisation, cancel mid-way, the CPU fallback of the 3D path,
results kept on the device, equality with the previous engine on real hippocampus data,
and (when a GPU is present) the CUDA path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unet_engine.inference import sliding_window as sw
from unet_engine.model.checkpoint import ModelCard, load_checkpoint
from unet_engine.errors import CancelledError
from unet_engine.inference.predict import predict_volume
from unet_engine.inference.runner import Runner, WindowedImage, device_image, run_patches, window_size
from unet_engine.io.volume_io import read_mask, read_volume
from unet_engine.metrics import dice
from unet_engine.model.network import ModelSpec
from unet_engine.paths import BUNDLED_MODELS
from unet_engine.model.preprocessing import apply_intensity, intensity_stats, prepare_image
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.inference.tta import entropy_map
from unet_engine.volume import Volume
from tests.train_helpers import OOMOffCPU, inference_model

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    return inference_model(spec, seed)


def _volume(shape=(7, 37, 51), spacing=(1.0, 1.0, 1.0)) -> Volume:
    arr = np.random.default_rng(0).gamma(3.0, 100.0, shape).astype(np.float32)
    return Volume(arr, spacing=spacing)


class Constant(nn.Module):
    """Equal logits everywhere: any blend of its windows must give exactly 1/C."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.classes = classes
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return torch.zeros((x.shape[0], self.classes, *x.shape[2:]), dtype=x.dtype, device=x.device)


# ----- tiling and blending ---------------------------------------------------------------------


@pytest.mark.parametrize("shape, patch", [((5, 7, 9), (8, 8, 8)), ((37, 29, 51), (16, 8, 24)), ((17, 8, 33), (16, 8, 8))])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_blend_covers_every_voxel_with_positive_weight(shape, patch, overlap):
    work = tuple(max(s, p) for s, p in zip(shape, patch))  # run_patches pads a volume smaller than the window
    starts = sw.axis_starts(work, patch, overlap)
    windows = sw.grid_windows(starts, patch)
    blender = sw.Blender(2, work, patch, starts, torch.device("cpu"))
    covered = np.zeros(work, np.int32)
    for w in windows:
        covered[w] += 1
        blender.add(torch.ones((1, 2, *patch)), [w])
    assert covered.min() >= 1 and len(windows) == len({tuple((w.start, w.stop) for w in win) for win in windows})
    for s, p, st in zip(work, patch, starts):
        assert sw.weight_sums(s, p, st).min() > 0
    np.testing.assert_allclose(blender.result().numpy(), 1.0, rtol=1e-5)  # separable sum == sum of full weights


def test_gaussian_weight_is_the_separable_nnunet_profile():
    w = sw.gaussian_weight((9, 16, 5))
    assert w.shape == (9, 16, 5) and w.dtype == np.float32 and w.min() > 0 and w.max() == pytest.approx(1.0, abs=1e-6)
    g = sw.gaussian_1d(64)
    assert g[31] == pytest.approx(1.0, abs=2e-3) and g[0] == pytest.approx(1e-3)  # sigma = 8: exp(-8) < floor
    assert np.isclose(g[31 - 8], np.exp(-0.5 * (8.5 / 8) ** 2) / np.exp(-0.5 * (0.5 / 8) ** 2), rtol=1e-5)


@pytest.mark.parametrize("shape", [(5, 7, 9), (23, 41, 30)])
def test_every_voxel_is_predicted_through_run_patches(shape):
    """A model with equal logits gives exactly uniform probabilities: no voxel left out or double-weighted."""
    card = ModelCard(spec=ModelSpec(dims=3, base_width=2, depth=2), training={"patch_size": [8, 12, 8]})
    model = Constant()
    runner = Runner(model.eval(), torch.device("cpu"), 3, 3, False)
    out = run_generator(run_patches(runner, np.zeros(shape, np.float32), None, card, None, overlap=0.25, window=(8, 12, 8)))
    assert tuple(out.probs.shape) == (3, *shape)
    np.testing.assert_allclose(out.probs.numpy(), 1.0 / 3.0, rtol=1e-5)
    assert all(s[2:] == (8, 12, 8) for s in model.seen)


def test_grown_window_is_bounded_and_spread_evenly():
    for shape in [(300, 512, 512), (96, 256, 256), (61, 90, 47)]:
        w = sw.grow_window(shape, (40, 56, 40), 8, 1 << 20, 0.25)
        assert all(v % 8 == 0 for v in w)
        assert np.prod(w) <= 1 << 20 and all(v >= min(p, s) for v, p, s in zip(w, (40, 56, 40), shape))
        assert all(v <= -(-s // 8) * 8 for v, s in zip(w, shape))
    assert sw.grow_window((96, 256, 256), (40, 56, 40), 8, 1 << 20, 0.25) == (56, 104, 104)  # 2 x 3 x 3 windows
    card = ModelCard(spec=ModelSpec(dims=3, base_width=2, depth=3), training={"patch_size": [40, 56, 40]})
    assert window_size(card, (35, 50, 35), torch.device("cpu")) == (40, 56, 40)  # small: the whole volume, one window
    assert np.prod(window_size(card, (300, 512, 512), torch.device("cpu"))) > np.prod((40, 56, 40))


# ----- batching, devices, cancel -----------------------------------------------------------------


def test_3d_batched_windows_equal_one_at_a_time():
    spec = ModelSpec(dims=3, base_width=2, depth=2)
    card = ModelCard(spec=spec, training={"patch_size": [8, 8, 8]})
    model, vol = _model(spec), _volume((13, 22, 19))
    kw = dict(probabilities_dtype=np.float32, window=(8, 12, 8))
    one = run_generator(predict_volume(model, card, vol, batch_size=1, **kw))
    many = run_generator(predict_volume(model, card, vol, batch_size=5, **kw))
    assert one.batch_size == 1 and many.batch_size == 5
    np.testing.assert_array_equal(one.labels, many.labels)
    np.testing.assert_allclose(one.probabilities, many.probabilities, atol=1e-5)
    tta1 = run_generator(predict_volume(model, card, vol, batch_size=1, tta=True, **kw))
    tta5 = run_generator(predict_volume(model, card, vol, batch_size=5, tta=True, **kw))
    np.testing.assert_array_equal(tta1.labels, tta5.labels)
    np.testing.assert_allclose(tta1.disagreement, tta5.disagreement, atol=1e-5)


def test_2d_batched_slices_equal_one_at_a_time():
    spec = ModelSpec(base_width=4, depth=2)
    model, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    one = run_generator(predict_volume(model, card, vol, batch_size=1, probabilities_dtype=np.float32))
    many = run_generator(predict_volume(model, card, vol, batch_size=7, probabilities_dtype=np.float32))
    np.testing.assert_array_equal(one.labels, many.labels)
    np.testing.assert_allclose(one.probabilities, many.probabilities, atol=1e-5)


def test_results_stay_where_inference_ran_until_read():
    spec = ModelSpec(dims=3, base_width=2, depth=1)
    pred = run_generator(predict_volume(_model(spec), ModelCard(spec=spec), _volume((6, 9, 10)), tta=True))
    t = pred.probabilities_tensor()
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, 6, 9, 10)
    np.testing.assert_allclose(pred.uncertainty, entropy_map(t).numpy(), atol=1e-6)
    assert pred.probabilities.dtype == np.float16 and pred.probabilities.flags.c_contiguous
    assert pred.probabilities is pred.probabilities  # copied once, then cached
    assert pred.disagreement.dtype == np.float32 and pred.disagreement.shape == (6, 9, 10)


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(1).integers(-1024, 3000, (4, 6, 5)).astype(np.int16),
        np.random.default_rng(2).integers(0, 65535, (4, 6, 5)).astype(np.uint16),
        np.random.default_rng(3).normal(100, 30, (4, 6, 5)).astype(">f4"),  # big-endian NIfTI data
        np.array([[[np.nan, np.inf, -np.inf, 5.0, 1e9]]], np.float32),
        np.random.default_rng(4).gamma(2.0, 50.0, (3, 4, 5)),  # float64
    ],
    ids=["int16", "uint16", "big-endian", "non-finite", "float64"],
)
def test_normalising_on_the_device_equals_apply_intensity(array):
    stats = intensity_stats(array, {"mode": "mr"})
    array.flags.writeable = False  # a memory-mapped image: must not be written to
    got = device_image(array, stats, torch.device("cpu")).numpy()
    np.testing.assert_array_equal(got, apply_intensity(array, stats))
    assert device_image(array, None, torch.device("cpu")).dtype == torch.float32
    # read window by window (the 3D sliding window): the same values, the caller's array untouched
    before = array.copy()
    lazy = WindowedImage(array, stats, torch.device("cpu"))
    box = tuple(slice(n // 3, n) for n in array.shape)
    np.testing.assert_array_equal(lazy.window(box).numpy(), got[box])
    np.testing.assert_array_equal(lazy.window(box).numpy(), got[box])  # twice: reading changes nothing
    for axis in range(3):  # 2D models: runs of slices along any axis
        n = array.shape[axis]
        np.testing.assert_array_equal(lazy.slab(axis, n // 2, n).numpy(), np.moveaxis(got, axis, 0)[n // 2 :])
    np.testing.assert_array_equal(array, before)


def test_cancel_mid_way_through_the_sliding_window():
    spec = ModelSpec(dims=3, base_width=2, depth=1)
    card = ModelCard(spec=spec, training={"patch_size": [4, 8, 8]})
    token = CancelToken()
    gen = predict_volume(_model(spec), card, _volume((12, 20, 20)), batch_size=1, cancel=token, window=(4, 8, 8))
    reports = [next(gen), next(gen), next(gen)]  # preparing, then two windows
    assert all(isinstance(r, Progress) for r in reports) and reports[-1].step == 2 and reports[-1].total > 2
    token.cancel()
    with pytest.raises(CancelledError):
        for _ in gen:
            pass


def test_3d_out_of_memory_off_the_cpu_restarts_on_the_cpu(caplog):
    spec = ModelSpec(dims=3, base_width=2, depth=1)
    card = ModelCard(spec=spec, training={"patch_size": [4, 8, 8]})
    inner, vol = _model(spec), _volume((9, 13, 11))
    ref = run_generator(predict_volume(inner, card, vol, window=(4, 8, 8), batch_size=1))
    with caplog.at_level("WARNING"):
        pred = run_generator(predict_volume(OOMOffCPU(inner).eval(), card, vol, device="meta", batch_size=2, window=(4, 8, 8)))
    assert pred.device == "cpu" and "falling back to the CPU" in caplog.text
    np.testing.assert_array_equal(pred.labels, ref.labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_matches_cpu(dims):
    spec = ModelSpec(dims=dims, base_width=4, depth=2)
    card = ModelCard(spec=spec, training={"patch_size": [8, 16, 16]} if dims == 3 else {})
    model, vol = _model(spec), _volume((19, 37, 51))
    kw = dict(window=(8, 16, 16)) if dims == 3 else {}
    cpu = run_generator(predict_volume(model, card, vol, device="cpu", tta=True, **kw))
    gpu = run_generator(predict_volume(model, card, vol, device="cuda", tta=True, **kw))
    assert gpu.device.startswith("cuda") and gpu.probabilities_tensor().is_cuda
    assert (gpu.labels == cpu.labels).mean() > 0.99  # fp16 autocast on the GPU
    np.testing.assert_allclose(gpu.probabilities.astype(np.float32), cpu.probabilities.astype(np.float32), atol=2e-2)
    assert gpu.uncertainty.shape == vol.shape and gpu.disagreement.shape == vol.shape


# ----- real data: same labels as the engine before the device-side rewrite ------------------------

HIPPO = DATA / "hippocampus"
# Figures of the previous engine (git b57e0fa, host-side stitching), bundled model default-3,
# the 8 fixture cases: mean Dice per label of predict_volume, and of the 3D sliding-window
# core on a 2 x 1 x 2 mosaic of the first 4 cases (window 40x56x40 = the training patch, overlap 0.5).
PREVIOUS_CASES = {1: 0.9040546591163126, 2: 0.8845392754906689}
PREVIOUS_MOSAIC = {1: 0.8958976292302313, 2: 0.9015314544476035}


def _fixture_cases() -> list[tuple[Volume, np.ndarray]]:
    ids = sorted(p.name.removesuffix(".nii.gz") for p in (HIPPO / "imagesTr").glob("*.nii.gz"))
    out = []
    for cid in ids:
        vol = read_volume(HIPPO / "imagesTr" / f"{cid}.nii.gz")
        out.append((vol, read_mask(HIPPO / "labelsTr" / f"{cid}.nii.gz", vol)))
    return out


def _mosaic(cases, card, grid=(2, 1, 2)):
    """Cases normalised one by one and packed at their cell origins (edge-padded cells)."""
    cases = cases[: int(np.prod(grid))]
    cell = tuple(max(v.shape[a] for v, _ in cases) for a in range(3))
    image = np.empty(tuple(g * c for g, c in zip(grid, cell)), np.float32)
    label = np.zeros(image.shape, np.uint8)
    boxes = []
    for idx, (vol, lab) in zip(np.ndindex(*grid), cases):
        img = prepare_image(vol, card)
        o = [i * c for i, c in zip(idx, cell)]
        padded = np.pad(img, [(0, c - s) for c, s in zip(cell, img.shape)], mode="edge")
        image[tuple(slice(a, a + c) for a, c in zip(o, cell))] = padded
        box = tuple(slice(a, a + s) for a, s in zip(o, img.shape))
        label[box] = lab
        boxes.append(box)
    return image, label, boxes


def test_bundled_model_on_real_cases_keeps_the_previous_labels():
    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    cases = _fixture_cases()
    preds = [run_generator(predict_volume(model, card, vol, device="cpu")).labels for vol, _ in cases]
    for lab in (1, 2):
        assert np.mean([dice(p, gt, lab) for p, (_, gt) in zip(preds, cases)]) == pytest.approx(PREVIOUS_CASES[lab], abs=1e-3)
    image, label, boxes = _mosaic(cases, card)
    runner = Runner(model, torch.device("cpu"), 3, 2, False)
    out = run_generator(run_patches(runner, image, None, card, None, overlap=0.5, window=(40, 56, 40)))
    tiled = out.labels.numpy()
    for lab in (1, 2):
        assert np.mean([dice(tiled[b], label[b], lab) for b in boxes]) == pytest.approx(PREVIOUS_MOSAIC[lab], abs=1e-3)
