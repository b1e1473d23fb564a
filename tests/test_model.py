"""U-Net architecture: shapes, odd sizes, 2D/2.5D/3D, bilinear, determinism, parameter counts."""

from __future__ import annotations

import pytest
import torch

from unet_engine.model.network import ModelSpec, UNet, build_model, count_parameters, fuse_for_inference, required_multiple


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("hw", [(32, 32), (37, 51), (1, 1), (17, 64)])
def test_2d_output_shape_any_size(upsample, hw):
    spec = ModelSpec(base_width=4, depth=3, upsample=upsample)
    model = build_model(spec).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, *hw))
    assert out.shape == (2, 3, *hw)
    assert torch.isfinite(out).all()


def test_2_5d_takes_neighbour_channels():
    spec = ModelSpec(base_width=4, depth=2, in_channels=5, context_slices=2)
    model = build_model(spec).eval()
    with torch.inference_mode():
        assert model(torch.randn(3, 5, 20, 24)).shape == (3, 3, 20, 24)
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, 1, 20, 24))


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_3d_odd_shape(upsample):
    spec = ModelSpec(dims=3, base_width=2, depth=2, num_classes=2, upsample=upsample)
    model = build_model(spec).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 1, 7, 9, 10))
    assert out.shape == (1, 2, 7, 9, 10)


def test_spec_validation_and_round_trip():
    with pytest.raises(ValueError, match="2.5D"):
        ModelSpec(context_slices=1, in_channels=1)
    with pytest.raises(ValueError, match="dims"):
        ModelSpec(dims=4)
    with pytest.raises(ValueError, match="upsample"):
        ModelSpec(upsample="nearest")
    with pytest.raises(ValueError, match="num_classes"):
        ModelSpec(num_classes=1)
    spec = ModelSpec(dims=2, in_channels=3, context_slices=1, base_width=8, depth=3, upsample="bilinear")
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict({**spec.to_dict(), "future_field": 1}) == spec  # newer cards still load
    assert required_multiple(spec) == 8


def test_classic_unet_has_31m_parameters():
    # Ronneberger et al.'s U-Net (64 .. 1024 feature maps) has ~31 M parameters
    assert count_parameters(UNet(ModelSpec(base_width=64, depth=4))) == pytest.approx(31.0e6, rel=0.01)
    assert [64, 128, 256, 512, 1024] == ModelSpec(base_width=64, depth=4).widths


def test_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = build_model(ModelSpec(base_width=4, depth=2)).eval()
    x = torch.randn(4, 1, 24, 20)
    with torch.inference_mode():
        a, b = model(x), model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert torch.equal(a, b)
    torch.testing.assert_close(a, single, atol=1e-5, rtol=1e-5)


def test_fused_model_matches_and_leaves_original_alone():
    torch.manual_seed(1)
    model = build_model(ModelSpec(base_width=4, depth=2))
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for _ in range(3):
            model(torch.randn(8, 1, 16, 16) * 3 + 1)
    model.eval()
    fused = fuse_for_inference(model)
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


def test_gradients_flow_in_training():
    model = build_model(ModelSpec(base_width=2, depth=2)).train()
    out = model(torch.randn(2, 1, 13, 11))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
