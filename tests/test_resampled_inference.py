"""Models that resample to their own spacing (unet_engine/inference/resampling.py): the device
resampler against ndimage / torch, any box bit-identical to the whole, the new path against the
old host path on real data (spleen CT, an upsampled hippocampus case), a region against the
whole image cut, streaming, cancel and the out-of-memory fallback."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from unet_engine.errors import CancelledError
from unet_engine.inference import predict as predict_module
from unet_engine.inference import resampling
from unet_engine.inference.predict import predict_volume
from unet_engine.inference.resampling import Resampler, slabs
from unet_engine.inference.runner import Runner, run_patches, run_slices, window_size
from unet_engine.inference.streaming import PartialProgress
from unet_engine.inference.tta import finalize, flip_axes_for
from unet_engine.io.volume_io import read_volume
from unet_engine.metrics import dice
from unet_engine.model.checkpoint import ModelCard
from unet_engine.model.network import ModelSpec, build_model
from unet_engine.model.preprocessing import (
    apply_intensity,
    image_array,
    intensity_stats,
    prepare_image,
    resample_back,
    resample_to_shape,
    resample_to_spacing,
    slice_axis_for_spacing,
)
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.registry.resolver import load_model_for_inference
from unet_engine.volume import Volume
from tests.model_helpers import Pointwise
from tests.train_helpers import DATA, HIPPO, OOMOffCPU, inference_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPLEEN = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz"
SPEC_2D = ModelSpec(base_width=4, depth=2)
SPEC_3D = ModelSpec(dims=3, base_width=2, depth=2)
SHAPES = [  # (source, destination): down, up, mixed, an axis kept, a one-voxel source axis
    ((9, 37, 51), (14, 29, 51)),
    ((20, 132, 148), (40, 62, 73)),
    ((7, 10, 13), (3, 25, 13)),
    ((1, 5, 5), (3, 2, 9)),
    ((16, 16, 16), (5, 7, 40)),
]


def _volume(shape=(9, 37, 51), spacing=(2.0, 1.0, 1.0)) -> Volume:
    arr = np.random.default_rng(0).gamma(3.0, 100.0, shape).astype(np.float32)
    return Volume(arr, spacing=spacing)


def old_path(model, card: ModelCard, vol: Volume, batch_size: int = 1, tta: bool = False, window=None):
    """The previous ``predict_volume`` of a resampling model: the whole image normalised and
    resampled on the host (ndimage), the whole float32 probabilities resampled back, then
    labels and entropy. Returns labels, uncertainty, probabilities, disagreement."""
    config, spec, dev = card.preprocess_config, card.spec, torch.device("cpu")
    raw, _, modality = image_array(vol)
    work = resample_to_spacing(apply_intensity(raw, intensity_stats(raw, config, modality)), vol.spacing,
                               config.target_spacing, order=1).astype(np.float32)
    runner = Runner(model, dev, spec.dims, batch_size, tta, flip_axes_for(card) if tta else None)
    if spec.dims == 3:
        win = window or window_size(card, work.shape, dev)
        out = run_generator(run_patches(runner, work, None, card, None, window=win))
    else:
        out = run_generator(run_slices(runner, work, None, spec, slice_axis_for_spacing(vol.spacing), slice(None), None))
    probs = resample_back(out.probs.numpy(), vol.shape, order=1)
    labels, unc = finalize(probs)
    dis = None if out.disagreement is None else resample_back(out.disagreement.numpy(), vol.shape, order=1)
    return labels, unc, probs, dis


def _card(spec: ModelSpec, target, **training) -> ModelCard:
    return ModelCard(spec=spec, preprocessing={"mode": "mr", "target_spacing": list(target)}, training=training)


# ----- the resampler ----------------------------------------------------------------------------


@pytest.mark.parametrize("src, dst", SHAPES)
def test_resampler_matches_ndimage_zoom_and_torch_trilinear(src, dst):
    a = np.random.default_rng(1).random((2, *src), dtype=np.float32)
    whole = tuple(slice(0, n) for n in dst)
    ours = Resampler(src, dst)(torch.from_numpy(a), (0, 0, 0), whole).numpy()
    ref = resample_to_shape(a, dst, order=1)  # ndimage.zoom(order=1, grid_mode=True, mode="nearest"), float64 inside
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-6
    trilinear = torch.nn.functional.interpolate(torch.from_numpy(a)[None], size=dst, mode="trilinear", align_corners=False)
    assert np.abs(ours - trilinear[0].numpy()).max() < 1e-4  # same alignment; torch's float32 coordinates differ by ~1e-5


def test_edges_clamp_like_ndimage_nearest():
    ramp = np.arange(6, dtype=np.float32)[None, None, :].repeat(2, 0).repeat(2, 1)
    up = Resampler((2, 2, 6), (2, 2, 12))(torch.from_numpy(ramp), (0, 0, 0), (slice(0, 2), slice(0, 2), slice(0, 12)))
    row = up[0, 0].numpy()
    assert row[0] == 0.0 and row[-1] == 5.0  # outside the centres: the edge voxel, never extrapolated
    np.testing.assert_allclose(row, ndimage.zoom(ramp, (1, 1, 2), order=1, mode="nearest", grid_mode=True)[0, 0], atol=1e-6)


@pytest.mark.parametrize("src, dst", SHAPES)
def test_any_box_is_bit_identical_to_the_whole(src, dst):
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.random((3, *src), dtype=np.float32))
    rs = Resampler(src, dst)
    whole = rs(a, (0, 0, 0), tuple(slice(0, n) for n in dst))
    for _ in range(25):
        box = []
        for n in dst:
            s = int(rng.integers(0, n))
            box.append(slice(s, int(rng.integers(s + 1, n + 1))))
        reads = rs.reads(tuple(box))
        part = rs(a[(slice(None), *reads)], [r.start for r in reads], tuple(box))
        assert torch.equal(part, whole[(slice(None), *box)])


def test_slabs_cover_the_box_once_within_the_budget():
    box = (slice(3, 40), slice(0, 10), slice(5, 15))
    parts = slabs(box, 400)
    rows = [r for p in parts for r in range(p[0].start, p[0].stop)]
    assert rows == list(range(3, 40)) and all(p[1:] == box[1:] for p in parts)
    assert max(p[0].stop - p[0].start for p in parts) * 100 <= 400
    assert len(slabs(box, 1)) == 37  # at least one row per slab


# ----- new path vs old path --------------------------------------------------------------------


@pytest.mark.parametrize("spec, kwargs", [(SPEC_2D, {"tta": True}), (SPEC_3D, {"window": (8, 16, 16)})], ids=["2d-tta", "3d"])
def test_new_path_equals_the_old_host_path(spec, kwargs):
    model, card, vol = inference_model(spec), _card(spec, (1.5, 0.8, 1.3)), _volume()
    labels, unc, probs, dis = old_path(model, card, vol, batch_size=2, **kwargs)
    pred = run_generator(predict_volume(model, card, vol, batch_size=2, **kwargs))
    np.testing.assert_array_equal(pred.labels, labels)
    np.testing.assert_allclose(pred.uncertainty, unc, atol=1e-5)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32), probs, atol=1e-3)  # float16 on the host
    np.testing.assert_allclose(pred.probabilities_tensor().numpy(), probs, atol=1e-6)
    if dis is not None:
        np.testing.assert_allclose(pred.disagreement, dis, atol=1e-6)


@pytest.fixture(scope="module")
def bundled():
    return load_model_for_inference("default", device="cpu")


def calibrated(spec: ModelSpec, vol: Volume, card: ModelCard) -> torch.nn.Module:
    """Random weights with BatchNorm statistics measured on ``vol`` as ``card`` prepares it: labels
    that vary over a CT (the bundled hippocampus model labels it all background) and probabilities
    near a tie almost everywhere, the hardest case for agreement."""
    torch.manual_seed(0)
    net = build_model(spec).train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net(torch.from_numpy(np.ascontiguousarray(prepare_image(vol, card)))[None, None])
    return net.eval()


@pytest.mark.parametrize("target", [(2.5, 1.6, 1.6), (1.5, 1.5, 1.5)])
def test_real_ct_labels_agree_with_the_old_path(target):
    """Spleen CT (20 x 132 x 148 at 5.0 x 0.79 x 0.79 mm), a 3D network calibrated on it (labels
    15 / 82 / 3 % and 22 / 76 / 3 %): measured 100 % of voxels equal (threshold 99.9 %),
    uncertainty within 1.1e-6."""
    spec = ModelSpec(dims=3, base_width=4, depth=2)
    ct = read_volume(SPLEEN)
    card = ModelCard(spec=spec, preprocessing={"mode": "ct", "target_spacing": list(target)})
    model = calibrated(spec, ct, card)
    labels, unc, _probs, _ = old_path(model, card, ct, batch_size=1)
    pred = run_generator(predict_volume(model, card, ct, batch_size=1))
    assert 0.01 < (labels == 1).mean() < 0.99  # not a trivial labelling
    assert (pred.labels == labels).mean() >= 0.999
    assert np.abs(pred.uncertainty - unc).max() < 1e-5


def test_real_hippocampus_upsampled_dice_is_unchanged(bundled):
    """A hippocampus case upsampled to 0.7 mm, the bundled model resampling to the 1 mm it was trained at:
    the same Dice against the manual labels as the old path (measured: identical labels)."""
    model, card = bundled
    card = dataclasses.replace(card, preprocessing={**card.preprocessing, "target_spacing": [1.0, 1.0, 1.0]})
    vol, ref = _upsampled_hippocampus()
    old, _, _, _ = old_path(model, card, vol)
    new = run_generator(predict_volume(model, card, vol, batch_size=1)).labels
    assert (new == old).mean() >= 0.999
    for label in (1, 2):
        assert dice(new, ref, label) >= dice(old, ref, label) - 1e-3
        assert dice(new, ref, label) > 0.7  # the model works at its spacing


def _upsampled_hippocampus() -> tuple[Volume, np.ndarray]:
    """hippocampus_320 (1 mm) upsampled to 0.7 mm: image linear, manual label nearest."""
    img = read_volume(HIPPO / "imagesTr" / "hippocampus_320.nii.gz")
    lab = read_volume(HIPPO / "labelsTr" / "hippocampus_320.nii.gz")
    zoom = [s / 0.7 for s in img.spacing]
    vol = Volume(ndimage.zoom(img.array.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest"),
                 spacing=(0.7, 0.7, 0.7))
    return vol, ndimage.zoom(lab.array.astype(np.uint8), zoom, order=0, grid_mode=True, mode="nearest")


# ----- regions ---------------------------------------------------------------------------------

REGION = (slice(2, 7), slice(5, 30), slice(10, 45))


def test_2d_region_equals_the_whole_cut_and_resamples_only_its_slices(monkeypatch):
    model, card, vol = inference_model(SPEC_2D), _card(SPEC_2D, (0.8, 1.3, 1.0)), _volume()
    whole = run_generator(predict_volume(model, card, vol, batch_size=1))
    loaded = _spy_loads(monkeypatch)
    part = run_generator(predict_volume(model, card, vol, batch_size=1, region=REGION))
    np.testing.assert_array_equal(part.labels, whole.labels[REGION])
    np.testing.assert_allclose(part.uncertainty, whole.uncertainty[REGION], atol=1e-6)
    np.testing.assert_allclose(part.probabilities.astype(np.float32), whole.probabilities[(slice(None), *REGION)], atol=1e-3)
    assert 0 < sum(loaded) < vol.array.size  # only the slices the region reads (whole slices: a 2D model)


def test_3d_region_resamples_only_the_part_it_needs(monkeypatch):
    model, vol = inference_model(SPEC_3D), _volume((12, 40, 48))
    card = _card(SPEC_3D, (1.5, 0.8, 1.3), patch_size=[4, 8, 8])
    loaded = _spy_loads(monkeypatch)
    region = (slice(3, 9), slice(12, 30), slice(15, 36))
    part = run_generator(predict_volume(model, card, vol, batch_size=2, region=region))
    assert part.labels.shape == part.uncertainty.shape == (6, 18, 21)
    assert 0 < sum(loaded) < 0.8 * vol.array.size  # the region's part plus half a training patch, not all


def test_3d_region_equals_the_whole_cut_on_a_real_case(bundled):
    """The bundled model on a hippocampus case upsampled to 0.7 mm (resampling to 1 mm), tiled
    (window = training patch 24 x 32 x 24): the central region equals the whole result cut there
    (measured 100 %; threshold 99 %). Resampled values are bit-identical; what can differ is
    where the windows sit (the region gets half a training patch of context, as without resampling)."""
    model, card = bundled
    card = dataclasses.replace(card, preprocessing={**card.preprocessing, "target_spacing": [1.0, 1.0, 1.0]},
                               training={**card.training, "patch_size": [24, 32, 24]})
    vol, _ref = _upsampled_hippocampus()
    box = tuple(slice(n // 4, n - n // 4) for n in vol.shape)
    whole = run_generator(predict_volume(model, card, vol, batch_size=1, window=(24, 32, 24)))
    part = run_generator(predict_volume(model, card, vol, batch_size=1, window=(24, 32, 24), region=box))
    assert (part.labels == whole.labels[box]).mean() >= 0.99
    assert (whole.labels[box] > 0).mean() > 0.01




@pytest.mark.parametrize("focus", [None, (15, 30, 40)])
def test_3d_region_of_a_pointwise_network_is_the_whole_cut(focus):
    """Without spatial context only the resampling and the geometry matter: the region's
    probabilities equal the whole result's within blending rounding, with and without streaming."""
    model, vol = Pointwise().eval(), _volume((40, 90, 100))
    card = _card(SPEC_3D, (1.5, 0.8, 1.3), patch_size=[8, 16, 16])
    region = (slice(10, 27), slice(20, 61), slice(33, 80))
    whole = run_generator(predict_volume(model, card, vol, batch_size=2, window=(8, 16, 16)))
    part = run_generator(predict_volume(model, card, vol, batch_size=2, window=(8, 16, 16), region=region, focus=focus))
    np.testing.assert_array_equal(part.labels, whole.labels[region])
    cut = whole.probabilities_tensor()[(slice(None), *region)]
    assert float((part.probabilities_tensor() - cut).abs().max()) < 1e-6
    assert 0.2 < (whole.labels == 0).mean() < 0.8


def _spy_loads(monkeypatch) -> list[int]:
    """Record the size of every raw box the resampling loads (in ``predict``)."""
    sizes: list[int] = []
    real = predict_module.device_image

    def spy(array, stats, device):
        sizes.append(int(np.asarray(array).size))
        return real(array, stats, device)

    monkeypatch.setattr(predict_module, "device_image", spy)
    return sizes


# ----- streaming, cancel, out of memory ----------------------------------------------------------


def test_3d_region_with_a_focus_streams_the_same_labels():
    model, vol = inference_model(SPEC_3D), _volume()
    card = _card(SPEC_3D, (1.5, 0.8, 1.0), patch_size=[4, 8, 8])
    kwargs = {"window": (8, 16, 16), "batch_size": 1, "region": REGION}
    ref = run_generator(predict_volume(model, card, vol, **kwargs))
    parts: list = []
    pred = run_generator(predict_volume(model, card, vol, focus=(4, 20, 30), focus_axis=1, **kwargs),
                         lambda p: parts.append(p.partial) if isinstance(p, PartialProgress) and p.partial else None)
    np.testing.assert_array_equal(pred.labels, ref.labels)
    cover = np.zeros(vol.shape, np.int32)
    for part in parts:
        cover[part.region] += 1
        local = tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(part.region, REGION))
        np.testing.assert_array_equal(part.labels, ref.labels[local])  # final: bit-identical resampling
    assert (cover[REGION] == 1).all() and cover.sum() == ref.labels.size and len(parts) > 1


@pytest.mark.parametrize("when", ["model's spacing", "patches", "input grid"])
def test_cancel_while_resampling_or_running(when, monkeypatch):
    monkeypatch.setitem(resampling.SLAB_VOXELS, "cpu", 3000)  # several slabs each way on a small volume
    model, card, vol = inference_model(SPEC_3D), _card(SPEC_3D, (1.5, 0.8, 1.0)), _volume()
    token = CancelToken()

    def on(p: Progress) -> None:
        if when in p.message:
            token.cancel()

    with pytest.raises(CancelledError):
        run_generator(predict_volume(model, card, vol, window=(8, 16, 16), batch_size=1, cancel=token), on)
    assert token.cancelled


def test_out_of_memory_while_resampling_falls_back_to_the_cpu(monkeypatch, caplog):
    # "meta" stands in for a GPU: resampling there runs out of memory, then the model does too
    model, card, vol = inference_model(SPEC_2D), _card(SPEC_2D, (1.5, 0.8, 1.0)), _volume()
    ref = run_generator(predict_volume(model, card, vol, batch_size=2))
    real = predict_module.device_image

    def oom_off_cpu(array, stats, device):
        if device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(array, stats, device)

    monkeypatch.setattr(predict_module, "device_image", oom_off_cpu)
    with caplog.at_level("WARNING"):
        pred = run_generator(predict_volume(OOMOffCPU(model).eval(), card, vol, device="meta", batch_size=2))
    assert "resampling on the CPU" in caplog.text and pred.device == "cpu"
    np.testing.assert_array_equal(pred.labels, ref.labels)
