"""Inference on tiny CPU shapes: geometry, 2D/2.5D/3D, regions, TTA, resampling, OOM recovery, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unet_engine.model.checkpoint import ModelCard, save_checkpoint
from unet_engine.errors import CancelledError, SegLoopError
from unet_engine.registry.resolver import load_model_for_inference
from unet_engine.inference.predict import (
    Prediction,
    estimate_batch_size,
    predict_array,
    predict_slice,
    predict_volume,
)
from unet_engine.inference.runner import patch_size
from unet_engine.model.network import ModelSpec
from unet_engine.progress import CancelToken, Progress, run_generator
from unet_engine.volume import Volume


from tests.train_helpers import OOMOffCPU, inference_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    return inference_model(spec, seed)


def _volume(shape=(7, 37, 51), spacing=(1.0, 1.0, 1.0)) -> Volume:
    rng = np.random.default_rng(0)
    arr = (rng.gamma(3.0, 100.0, shape)).astype(np.float32)
    return Volume(arr, spacing=spacing, origin=(1.0, 2.0, 3.0))


def _check(pred: Prediction, shape, classes=3):
    assert pred.labels.shape == shape and pred.labels.dtype == np.uint8
    assert pred.probabilities.shape == (classes, *shape)
    assert pred.uncertainty.shape == shape and pred.uncertainty.dtype == np.float32
    assert 0.0 <= pred.uncertainty.min() and pred.uncertainty.max() <= 1.0
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=5e-3)
    np.testing.assert_array_equal(pred.labels, pred.probabilities.astype(np.float32).argmax(0))
    assert pred.device == "cpu" and pred.seconds > 0


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(base_width=4, depth=3),
        ModelSpec(base_width=4, depth=2, upsample="bilinear"),
        ModelSpec(base_width=4, depth=2, in_channels=3, context_slices=1),
        ModelSpec(dims=3, base_width=2, depth=2),
    ],
    ids=["2d", "2d-bilinear", "2.5d", "3d"],
)
def test_shapes_for_every_model_kind(spec):
    vol = _volume()
    gen = predict_volume(_model(spec), ModelCard(spec=spec), vol)
    reports = []
    pred = run_generator(gen, reports.append)
    _check(pred, vol.shape)
    assert reports and all(isinstance(r, Progress) for r in reports)
    assert reports[-1].fraction == pytest.approx(1.0)
    assert pred.disagreement is None and pred.region is None


def test_tta_adds_disagreement():
    spec = ModelSpec(base_width=4, depth=2)
    pred = predict_array(_model(spec), ModelCard(spec=spec), _volume().array, tta=True, probabilities_dtype=np.float32)
    _check(pred, (7, 37, 51))
    assert pred.probabilities.dtype == np.float32
    assert pred.disagreement is not None and pred.disagreement.shape == (7, 37, 51)
    assert 0.0 <= pred.disagreement.min() and pred.disagreement.max() <= 1.0


def test_tta_flips_only_axes_the_model_was_trained_to_mirror(caplog):
    from unet_engine.inference.tta import flip_axes_for, flip_sets

    spec = ModelSpec(base_width=2, depth=1)
    assert flip_axes_for(ModelCard(spec=spec)) == [0, 1]  # card says nothing: nnU-Net convention
    assert flip_axes_for(ModelCard(spec=spec, training={"config": {"augment": {"p_flip": 0.5, "flip_axes": [1]}}})) == [1]
    no_flip = ModelCard(spec=spec, training={"config": {"augment": {"p_flip": 0.0}}})
    assert flip_axes_for(no_flip) == []
    assert flip_axes_for(ModelCard(spec=spec, training={"tta_flip_axes": [0]})) == [0]
    assert flip_sets(2) == [(), (2,), (3,), (2, 3)]
    assert flip_sets(3, [0, 2]) == [(), (2,), (4,), (2, 4)]
    with caplog.at_level("WARNING"):
        pred = predict_array(_model(spec), no_flip, _volume().array, tta=True)
    assert "without mirroring" in caplog.text
    assert pred.disagreement is not None and pred.disagreement.max() == 0.0


def test_tta_3d():
    spec = ModelSpec(dims=3, base_width=2, depth=1)
    pred = predict_array(_model(spec), ModelCard(spec=spec), _volume((6, 9, 10)).array, tta=True)
    _check(pred, (6, 9, 10))
    assert pred.disagreement is not None


def test_deterministic_and_batch_size_independent():
    spec = ModelSpec(base_width=4, depth=2, in_channels=3, context_slices=1)
    model, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    a = run_generator(predict_volume(model, card, vol, batch_size=7))
    b = run_generator(predict_volume(model, card, vol, batch_size=2))
    c = run_generator(predict_volume(model, card, vol, batch_size=7))
    np.testing.assert_array_equal(a.labels, c.labels)
    np.testing.assert_array_equal(a.probabilities, c.probabilities)
    assert (a.labels == b.labels).mean() > 0.999
    np.testing.assert_allclose(a.probabilities.astype(np.float32), b.probabilities.astype(np.float32), atol=2e-3)


def test_matches_plain_model_forward():
    """The fast path (BN folded, channels-last, padded once) computes what the network computes."""
    from unet_engine.model.preprocessing import prepare_image

    spec = ModelSpec(base_width=4, depth=3)
    model, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    pred = run_generator(predict_volume(model, card, vol, probabilities_dtype=np.float32))
    x = torch.from_numpy(prepare_image(vol, card))[:, None]
    with torch.inference_mode():
        ref = torch.softmax(model(x), 1).numpy().swapaxes(0, 1)
    np.testing.assert_allclose(pred.probabilities, ref, atol=1e-4)


def test_slices_along_the_axis_of_largest_spacing():
    spec = ModelSpec(base_width=2, depth=1)
    inner = _model(spec)
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            seen.append(tuple(x.shape))
            return self.inner(x)

    vol = _volume((6, 10, 4), spacing=(0.8, 0.8, 5.0))  # "sagittal-thick": slice along i
    pred = run_generator(predict_volume(Spy().eval(), ModelCard(spec=spec), vol, batch_size=4))
    _check(pred, vol.shape)
    assert seen[0] == (4, 1, 6, 10) and sum(s[0] for s in seen) == 4


def test_region_and_predict_slice_match_full_prediction():
    spec = ModelSpec(base_width=4, depth=2, in_channels=3, context_slices=1)
    model, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    full = run_generator(predict_volume(model, card, vol, probabilities_dtype=np.float32))
    one = predict_slice(model, card, vol, 3, probabilities_dtype=np.float32)
    assert one.labels.shape == (1, 37, 51) and one.region[0] == slice(3, 4)
    np.testing.assert_array_equal(one.labels, full.labels[3:4])
    np.testing.assert_allclose(one.probabilities, full.probabilities[:, 3:4], atol=1e-5)
    box = (slice(2, 5), slice(10, 20), slice(None))
    part = run_generator(predict_volume(model, card, vol, region=box))
    assert part.labels.shape == (3, 10, 51)
    np.testing.assert_array_equal(part.labels, full.labels[2:5, 10:20])
    with pytest.raises(IndexError):
        predict_slice(model, card, vol, 7)


def test_region_3d():
    spec = ModelSpec(dims=3, base_width=2, depth=1)
    card = ModelCard(spec=spec, training={"patch_size": [4, 8, 8]})
    model, vol = _model(spec), _volume((10, 12, 14))
    full = run_generator(predict_volume(model, card, vol))
    part = run_generator(predict_volume(model, card, vol, region=(slice(3, 6), slice(None), slice(2, 9))))
    assert part.labels.shape == (3, 12, 7)
    assert (part.labels == full.labels[3:6, :, 2:9]).mean() > 0.95


def test_3d_window_is_the_whole_volume_when_it_is_small_else_the_training_patch():
    spec = ModelSpec(dims=3, base_width=2, depth=2)  # sizes multiple of 4
    card = ModelCard(spec=spec, training={"patch_size": [8, 12, 12]})  # 1152 voxels
    assert patch_size(card, (7, 10, 13)) == (8, 12, 16)  # 1536 <= 2 x 1152: one window
    assert patch_size(card, (13, 12, 14)) == (8, 12, 12)  # 3072 > 2 x 1152: tiled
    assert patch_size(card, (200, 8, 8)) == (8, 12, 12)  # over the 128 cap: tiled
    assert patch_size(ModelCard(spec=spec), (10, 12, 14)) == (12, 12, 16)  # no training patch


def test_3d_one_window_and_tiling_give_the_same_labels():
    spec = ModelSpec(dims=3, base_width=2, depth=2)
    model, vol = _model(spec), _volume((10, 12, 14))
    tiled = run_generator(predict_volume(model, ModelCard(spec=spec, training={"patch_size": [4, 8, 8]}), vol))
    whole = run_generator(predict_volume(model, ModelCard(spec=spec, training={"patch_size": [8, 12, 12]}), vol))
    _check(tiled, vol.shape)
    _check(whole, vol.shape)
    assert (tiled.labels == whole.labels).mean() > 0.9  # fully convolutional: only patch borders differ


def test_output_on_input_grid_when_card_resamples():
    spec = ModelSpec(base_width=2, depth=2)
    card = ModelCard(spec=spec, preprocessing={"mode": "mr", "target_spacing": [1.0, None, None]})
    vol = _volume((5, 20, 24), spacing=(3.0, 1.0, 1.0))
    pred = run_generator(predict_volume(_model(spec), card, vol, tta=True))
    _check(pred, vol.shape)
    assert pred.disagreement.shape == vol.shape
    sub = run_generator(predict_volume(_model(spec), card, vol, region=(slice(1, 2), slice(None), slice(None))))
    assert sub.labels.shape == (1, 20, 24)


def test_uint8_constant_and_nan_inputs_do_not_crash():
    spec = ModelSpec(base_width=2, depth=2)
    model, card = _model(spec), ModelCard(spec=spec)
    for arr in (np.full((3, 9, 11), 7, np.uint8), np.full((3, 9, 11), np.nan, np.float32), np.zeros((1, 1, 1), np.int16)):
        pred = predict_array(model, card, arr)
        assert pred.labels.shape == arr.shape and np.isfinite(pred.uncertainty).all()
    pred = predict_array(model, card, np.ones((9, 11), np.float32))  # a 2D image is one slice
    assert pred.labels.shape == (1, 9, 11)


class OOMOnce(nn.Module):
    """Raises CUDA out-of-memory on its first call, then behaves."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        if len(self.calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return self.inner(x)


def test_oom_halves_the_batch_and_gives_the_same_result():
    spec = ModelSpec(base_width=4, depth=2)
    inner, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    ref = run_generator(predict_volume(inner, card, vol, batch_size=4))
    wrapped = OOMOnce(inner).eval()
    pred = run_generator(predict_volume(wrapped, card, vol, batch_size=4))
    assert wrapped.calls[:3] == [4, 2, 2]
    assert pred.batch_size == 2
    np.testing.assert_array_equal(pred.labels, ref.labels)


def test_oom_at_batch_one_falls_back_to_cpu(caplog):
    # "meta" stands in for a GPU here: a device that is not the CPU, on which the model OOMs
    spec = ModelSpec(base_width=4, depth=2)
    inner, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    ref = run_generator(predict_volume(inner, card, vol))
    with caplog.at_level("WARNING"):
        pred = run_generator(predict_volume(OOMOffCPU(inner).eval(), card, vol, device="meta", batch_size=4))
    assert pred.device == "cpu"
    assert "falling back to the CPU" in caplog.text and "batch size 1" in caplog.text
    np.testing.assert_array_equal(pred.labels, ref.labels)


def test_oom_on_cpu_at_batch_one_is_a_clear_error():
    class AlwaysOOM(nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")

    spec = ModelSpec(base_width=2, depth=1)
    with pytest.raises(SegLoopError, match="not enough memory"):
        run_generator(predict_volume(AlwaysOOM().eval(), ModelCard(spec=spec), _volume(), batch_size=2))


def test_other_errors_are_not_swallowed():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        run_generator(predict_volume(Broken().eval(), ModelCard(spec=ModelSpec(base_width=2, depth=1)), _volume()))


def test_cancel_is_honoured_between_batches():
    spec = ModelSpec(base_width=2, depth=1)
    token = CancelToken()
    gen = predict_volume(_model(spec), ModelCard(spec=spec), _volume(), batch_size=1, cancel=token)
    first = next(gen)
    assert isinstance(first, Progress)
    next(gen)  # one batch done
    token.cancel()
    assert token.cancelled
    with pytest.raises(CancelledError):
        for _ in gen:
            pass


def test_caller_model_is_not_modified():
    spec = ModelSpec(base_width=4, depth=2)
    model = _model(spec).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_generator(predict_volume(model, ModelCard(spec=spec), _volume()))
    assert model.training
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous()


def test_weights_change_invalidates_the_prepared_copy():
    spec = ModelSpec(base_width=2, depth=1)
    model, card, vol = _model(spec), ModelCard(spec=spec), _volume()
    a = run_generator(predict_volume(model, card, vol, probabilities_dtype=np.float32))
    with torch.no_grad():
        model.head.bias.add_(torch.tensor([5.0, 0.0, 0.0]))  # in place, like an optimiser step
    b = run_generator(predict_volume(model, card, vol, probabilities_dtype=np.float32))
    assert (b.labels == 0).mean() > (a.labels == 0).mean()


def test_wrong_channel_count_is_refused():
    class Odd(nn.Module):
        def forward(self, x):
            return x

    spec = ModelSpec(base_width=2, depth=1, in_channels=2)
    with pytest.raises(SegLoopError, match="input channels"):
        run_generator(predict_volume(Odd(), ModelCard(spec=spec), _volume()))


def test_batch_size_estimate():
    spec = ModelSpec(base_width=16)
    cpu = torch.device("cpu")
    assert estimate_batch_size(spec, (1, 64, 48), cpu) >= 16  # small slices: batch many
    assert estimate_batch_size(spec, (1, 512, 512), cpu) == 1  # big slices: one at a time
    assert estimate_batch_size(ModelSpec(dims=3), (1, 128, 128, 128), cpu) == 1


def test_load_model_for_inference(tmp_path):
    spec = ModelSpec(base_width=2, depth=1)
    model = _model(spec)
    folder = save_checkpoint(model, ModelCard(spec=spec, labels={0: "bg", 1: "x", 2: "y"}), tmp_path / "m")
    loaded, card = load_model_for_inference(folder, device="cpu")
    assert card.labels[2] == "y" and not loaded.training
    pred = predict_array(loaded, card, _volume().array)
    ref = predict_array(model, card, _volume().array)
    np.testing.assert_array_equal(pred.labels, ref.labels)
    with pytest.raises(SegLoopError, match="device"):
        load_model_for_inference(folder, device="cuda" if not torch.cuda.is_available() else "nonsense")


@pytest.mark.parametrize("dims, max_batch", [(2, 8), (2, 6), (3, 4)])
def test_tta_variants_stacked_in_one_pass_give_the_same_result(dims, max_batch):
    """A GPU stacks TTA's mirrored variants into one forward pass (``max_batch``); the averaged
    probabilities and the disagreement are those of one variant per pass, and fewer passes run."""
    from unet_engine.inference.tta import softmax_probs

    torch.manual_seed(0)
    conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(1, 3, 3, padding=1).eval()
    calls: list[int] = []

    def forward(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return conv(t)

    x = torch.randn(2, 1, *([12] * dims))
    with torch.inference_mode():
        one = softmax_probs(forward, x, True)
        n_one, calls[:] = len(calls), []
        stacked = softmax_probs(forward, x, True, max_batch=max_batch)
    torch.testing.assert_close(stacked[0], one[0], rtol=1e-5, atol=1e-6)
    assert stacked[1] is not None and one[1] is not None and torch.equal(stacked[1], one[1])
    assert len(calls) < n_one and max(calls) <= max_batch
