"""Networks by name: `build_model(name, **config)` over a plain dict; a miss lists the names."""
from __future__ import annotations

from torch import nn

from src.models.autoencoders import AUTOENCODERS
from src.models.unet import UNet

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, **AUTOENCODERS}


def build_model(name: str, **config) -> nn.Module:
    """Create a registered model; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](**config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
