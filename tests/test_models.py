import pytest
import torch

from src.models.registry import MODELS, build_model, count_parameters
from src.models.unet import UNet


@pytest.mark.parametrize("refine", [0, 4])
@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (2, 1, 37, 53), (1, 1, 258, 540)])
def test_any_size_in_same_size_out(shape, refine):
    model = build_model("unet", width=8, depth=2, refine=refine).eval()
    with torch.no_grad():
        assert model(torch.rand(shape)).shape == shape


def test_global_residual_zero_head_is_identity():
    model = UNet(width=8, depth=2)
    x = torch.rand(1, 1, 30, 41)
    assert not torch.equal(model(x), x)
    for p in model.head.parameters():
        torch.nn.init.zeros_(p)
    assert torch.equal(model(x), x)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*unet"):
        build_model("resnet")


def test_registry_and_gradients():
    assert "unet" in MODELS
    model = build_model("unet", width=4, depth=1)
    assert count_parameters(model) > 0
    model(torch.rand(2, 1, 16, 16)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
