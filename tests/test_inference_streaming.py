"""View-first streaming (unet_engine/inference/streaming.py, ``predict_volume(focus=...)``): the
prediction is the same as without a focus (2D, 2.5D, 3D; with and without resampling;
every focus axis), the partial labels are final and cover the volume once, the focus
slice's labels come first, and cancel works mid-stream. Real data: the bundled 3D model
on a hippocampus case and on the spleen CT."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from unet_engine.inference import sliding_window as sw
from unet_engine.model.checkpoint import ModelCard
from unet_engine.errors import CancelledError
from unet_engine.inference.predict import predict_volume
from unet_engine.registry.resolver import load_model_for_inference
from unet_engine.io.volume_io import read_volume
from unet_engine.model.network import ModelSpec
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.inference.streaming import OrderedBlend, PartialProgress, nearest_first
from unet_engine.volume import Volume
from tests.train_helpers import DATA, HIPPO, inference_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPLEEN = DATA / "io" / "ct_spleen_nifti" / "image.nii.gz"
SPEC_2D = ModelSpec(base_width=4, depth=2)
SPEC_25D = ModelSpec(base_width=4, depth=2, in_channels=3, context_slices=1)
SPEC_3D = ModelSpec(dims=3, base_width=2, depth=2)
CASES = {  # name: spec, predict_volume kwargs, target spacing
    "2d": (SPEC_2D, {"batch_size": 2}, None),
    "2.5d": (SPEC_25D, {"batch_size": 3}, None),
    "3d": (SPEC_3D, {"window": (4, 16, 16), "batch_size": 2}, None),
    "3d-tta": (SPEC_3D, {"window": (4, 16, 24), "batch_size": 3, "tta": True}, None),
    "2d-resampled": (SPEC_2D, {"batch_size": 2}, [1.0, 1.3, None]),
    "3d-resampled": (SPEC_3D, {"window": (8, 16, 16), "batch_size": 1}, [1.5, 0.8, 1.0]),
}


def _volume() -> Volume:
    arr = np.random.default_rng(0).gamma(3.0, 100.0, (9, 37, 51)).astype(np.float32)
    return Volume(arr, spacing=(2.0, 1.0, 1.0))


def _run(model, card, vol, **kwargs):
    """The prediction and the (step, partial) reports of one run."""
    seen: list[tuple[int, object]] = []

    def on(p: Progress) -> None:
        if isinstance(p, PartialProgress) and p.partial is not None:
            seen.append((p.step, p.partial))

    return run_generator(predict_volume(model, card, vol, **kwargs), on), seen


def _assert_streams_the_same(ref, pred, parts, shape) -> None:
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32), ref.probabilities.astype(np.float32), atol=1e-6)
    cover = np.zeros(shape, np.int32)
    for _step, part in parts:
        cover[part.region] += 1
        np.testing.assert_array_equal(part.labels, ref.labels[part.region])  # final: never changes
    assert cover.min() == 1 and cover.max() == 1  # every voxel streamed exactly once


@pytest.mark.parametrize("name", list(CASES))
def test_streaming_gives_the_same_prediction_for_every_focus_axis(name):
    spec, kwargs, spacing = CASES[name]
    pre = {"mode": "mr", "target_spacing": spacing} if spacing else {"mode": "mr"}
    model, card, vol = inference_model(spec), ModelCard(spec=spec, preprocessing=pre), _volume()
    ref, none = _run(model, card, vol, **kwargs)
    assert none == []  # no focus: no partial results, the old behaviour
    for axis in (0, 1, 2):
        pred, parts = _run(model, card, vol, focus=(4, 20, 30), focus_axis=axis, **kwargs)
        _assert_streams_the_same(ref, pred, parts, vol.shape)
        assert len(parts) > 1 or spec.dims == 3


@pytest.mark.parametrize("name", ["2.5d", "3d", "2d-resampled"])
def test_region_with_a_focus_streams_only_the_region(name):
    spec, kwargs, spacing = CASES[name]
    pre = {"mode": "mr", "target_spacing": spacing} if spacing else {"mode": "mr"}
    model, card, vol = inference_model(spec), ModelCard(spec=spec, preprocessing=pre), _volume()
    region = (slice(2, 7), slice(5, 30), slice(10, 45))
    ref, _ = _run(model, card, vol, region=region, **kwargs)
    pred, parts = _run(model, card, vol, region=region, focus=(4, 20, 30), focus_axis=0, **kwargs)
    np.testing.assert_array_equal(pred.labels, ref.labels)
    cover = np.zeros(vol.shape, np.int32)
    for _step, part in parts:
        cover[part.region] += 1
        local = tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(part.region, region))
        np.testing.assert_array_equal(part.labels, ref.labels[local])
    assert (cover[region] == 1).all() and cover.sum() == ref.labels.size


@pytest.mark.parametrize("spec", [SPEC_2D, SPEC_25D], ids=["2d", "2.5d"])
def test_2d_focus_slice_comes_first_then_outward(spec):
    vol = _volume()
    _pred, parts = _run(inference_model(spec), ModelCard(spec=spec), vol, focus=(6, 3, 3), focus_axis=0, batch_size=1)
    order = [p.region[0].start for _s, p in parts]
    assert order[0] == 6 and sorted(order[:3]) == [5, 6, 7] and sorted(order) == list(range(9))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_3d_focus_plane_is_final_after_only_the_windows_covering_it(axis):
    vol, window, focus = _volume(), (4, 16, 16), (4, 20, 30)
    _pred, parts = _run(inference_model(SPEC_3D), ModelCard(spec=SPEC_3D), vol, focus=focus, focus_axis=axis,
                        window=window, batch_size=1)
    starts = sw.axis_starts(tuple(max(s, w) for s, w in zip(vol.shape, window)), window)
    covering = sum(1 for combo in itertools.product(*starts) if combo[axis] <= focus[axis] < combo[axis] + window[axis])
    assert _plane_ready_step(parts, vol.shape, axis, focus[axis]) == covering < len(list(itertools.product(*starts)))


def _plane_ready_step(parts, shape, axis, index) -> int:
    """The progress step at which the partials cover the whole plane ``index`` of ``axis``."""
    plane = np.zeros(shape, bool)[(slice(None),) * axis + (index,)]
    for step, part in parts:
        if part.region[axis].start <= index < part.region[axis].stop:
            plane[tuple(r for a, r in enumerate(part.region) if a != axis)] = True
            if plane.all():
                return step
    raise AssertionError("the plane in view never completed")


def test_nearest_first_alternates_and_ordered_blend_matches_the_plain_sum():
    assert nearest_first([(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)], 5) == [2, 3, 1, 4, 0]  # by distance: 0, 1, 2, 3, 4
    import torch

    shape, patch = (13, 9, 11), (6, 5, 5)
    starts = sw.axis_starts(shape, patch, 0.5)
    windows = sw.grid_windows(starts, patch)
    values = torch.rand((len(windows), 2, *patch), generator=torch.Generator().manual_seed(0))
    plain = sw.Blender(2, shape, patch, starts, torch.device("cpu"))
    plain.add(values.clone(), windows)
    unzeroed = sw.Blender(2, shape, patch, starts, torch.device("cpu"), zeroed=False)
    unzeroed.acc.fill_(float("nan"))  # streamed: each cell's first part is copied in, over whatever was there
    ordered = OrderedBlend(unzeroed, windows)
    cover = np.zeros(shape, np.int32)
    for i in np.random.default_rng(1).permutation(len(windows)):
        for cell in ordered.add(values[i : i + 1].clone(), [int(i)]):
            cover[ordered.box(cell)] += 1
    assert cover.min() == 1 and cover.max() == 1 and not ordered.pending  # every cell finished once
    assert torch.equal(ordered.blender.acc, plain.acc)  # bit-identical sums in any order


def test_cancel_mid_stream():
    vol, token = _volume(), CancelToken()
    gen = predict_volume(inference_model(SPEC_2D), ModelCard(spec=SPEC_2D), vol, focus=(4, 0, 0), batch_size=1, cancel=token)
    with pytest.raises(CancelledError):
        for report in gen:
            if isinstance(report, PartialProgress):
                token.cancel()


# ----- real model, real data ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    return load_model_for_inference("default", device="cpu")


def test_bundled_model_on_hippocampus_streams_identically(bundled):
    model, card = bundled
    vol = read_volume(HIPPO / "imagesTr" / "hippocampus_320.nii.gz")
    focus = tuple(n // 2 for n in vol.shape)
    for window in (None, (16, 24, 16)):  # one window (the whole case) and a tiling
        ref, _ = _run(model, card, vol, window=window, batch_size=1)
        pred, parts = _run(model, card, vol, window=window, batch_size=1, focus=focus, focus_axis=2)
        _assert_streams_the_same(ref, pred, parts, vol.shape)
        if window is not None:
            assert _plane_ready_step(parts, vol.shape, 2, focus[2]) < parts[-1][0]


@pytest.mark.parametrize("spacing, axis, focus", [(None, 2, (10, 48, 8)), ([2.5, 1.6, 1.6], 0, (1, 48, 48))],
                         ids=["native", "resampled"])
def test_bundled_model_on_the_spleen_ct_streams_identically(bundled, spacing, axis, focus):
    model, card = bundled
    if spacing is not None:
        card = dataclasses.replace(card, preprocessing={**card.preprocessing, "target_spacing": spacing})
    ct = read_volume(SPLEEN)
    vol = Volume(np.ascontiguousarray(ct.array[:, 20:116, 30:126]), spacing=ct.spacing, modality="CT")
    kwargs = {"window": (16, 48, 48), "batch_size": 1}
    ref, _ = _run(model, card, vol, **kwargs)
    pred, parts = _run(model, card, vol, focus=focus, focus_axis=axis, **kwargs)  # near an edge: one row of windows
    _assert_streams_the_same(ref, pred, parts, vol.shape)
    assert parts[0][0] < parts[-1][0]  # the first part came before the end
    assert _plane_ready_step(parts, vol.shape, axis, focus[axis]) < parts[-1][0]
