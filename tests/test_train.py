import math

import pytest
import torch

from src.train import clipped_mse, resolve_device, warmup_cosine


def test_clipped_mse_hand_computed():
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5])
    pred = torch.tensor([1.2, 0.9, -0.2, 0.1, 1.5, 0.5])
    # free: overshoot past white (1.2 vs 1) and past black (-0.2 vs 0); counted: -0.1, 0.1, 1.0, 0
    expected = (0.01 + 0.01 + 1.0) / 6
    assert clipped_mse(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_clipped_mse_bounds_the_scored_error_and_never_exceeds_mse():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(1000, generator=g) > 0.7).float()
    pred = torch.randn(1000, generator=g) * 0.1 + 0.5
    scored = ((pred.clamp(0, 1) - target) ** 2).mean().item()
    assert scored <= clipped_mse(pred, target).item() <= ((pred - target) ** 2).mean().item()
    inside = pred.clamp(0, 1)
    assert clipped_mse(inside, target).item() == pytest.approx(scored)


def test_overshoot_beyond_the_margin_is_pulled_back():
    pred = torch.tensor([1.75, -1.25], requires_grad=True)
    loss = clipped_mse(pred, torch.tensor([1.0, 0.0]), margin=0.25)
    assert loss.item() == pytest.approx((0.5 ** 2 + 1.0 ** 2) / 2)
    loss.backward()
    assert pred.grad[0] > 0 and pred.grad[1] < 0


def test_clipped_mse_keeps_gradient_when_target_is_inside():
    pred = torch.tensor([1.4], requires_grad=True)
    clipped_mse(pred, torch.tensor([0.8])).backward()
    assert pred.grad.item() == pytest.approx(2 * 0.6)


def test_warmup_cosine():
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.0)


def test_cuda_requested_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
