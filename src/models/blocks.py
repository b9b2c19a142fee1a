"""Building blocks shared by the denoiser and the MNIST autoencoders (so their encoders match)."""
from __future__ import annotations

import torch
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class Encoder(nn.Module):
    """Space-to-depth stem, then `depth` levels that halve the size and double the channels.

    The stem folds each 2x2 block into 4 channels (lossless, FFDNet-style) so the widest convs run
    at a quarter of the pixels: the main reason the model trains fast on a CPU. The MNIST
    autoencoders use this same class, so their weights load into the denoiser (`--init-from`).
    """

    def __init__(self, in_ch: int = 1, width: int = 32, depth: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), conv_block(4 * in_ch, width))
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), conv_block(width << i, width << (i + 1))) for i in range(depth))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats
