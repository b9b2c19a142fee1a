"""Per-batch losses of the denoiser, by name (`--loss`)."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def mse_step(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)


def clipped_mse(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """MSE that, like the score, forgives overshooting a pure white (1) or black (0) target.

    Inference clips to [0, 1], so a white background predicted at 1.2 scores perfectly; plain MSE
    would still spend capacity pulling it to 1.0. The overshoot is free only up to `margin`: past
    it the loss grows again, which keeps outputs bounded (with fully free overshoot a batch-2 run
    drifts to huge outputs and diverges). Elsewhere this is the plain MSE with its gradient (a hard
    clamp would zero the gradient wherever the prediction is out of range, even when the target is
    not at that bound). It lies between the clipped (scored) MSE and the MSE, up to the margin.
    """
    return clipped_error(pred, target, margin).square().mean()


def clipped_error(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """pred - target, with up to `margin` of overshoot past a white or black target forgiven."""
    err = pred.float() - target
    over = (target >= 1) & (err > 0)
    under = (target <= 0) & (err < 0)
    return torch.where(over, (err - margin).clamp(min=0),
                       torch.where(under, (err + margin).clamp(max=0), err))


def clipped_mse_step(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return clipped_mse(model(x), y)


def clipped_l1_step(model: nn.Module, batch) -> torch.Tensor:
    """Charbonnier (smooth L1, eps 1e-3) of the clipped error: the loss of EDSR/NAFNet-style training."""
    x, y = batch
    return (clipped_error(model(x), y).square() + 1e-6).sqrt().mean()


LOSSES = {"mse": mse_step, "clipped_mse": clipped_mse_step, "clipped_l1": clipped_l1_step}
