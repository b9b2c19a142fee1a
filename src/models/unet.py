"""The document denoiser: a U-Net on the shared encoder, with a global residual.

Commands create it by name (`src.models.registry.build_model("unet", **config)`); the same (name,
config) is stored in checkpoints so a checkpoint rebuilds itself. It takes any image size: the input
is padded to the network's multiple and the output cropped back.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from src.models.blocks import Encoder, conv_block


class UNet(nn.Module):
    """U-Net with a global residual: predicts the correction to add to the noisy page.

    Input and output (N, 1, H, W) in [0, 1] (the output is not clamped while training, so the loss
    keeps its gradient; inference clamps). Any H, W: padded to a multiple of 2**(depth+1).
    """

    def __init__(self, in_ch: int = 1, width: int = 32, depth: int = 3, refine: int = 0):
        super().__init__()
        self.multiple = 2 ** (depth + 1)
        self.encoder = Encoder(in_ch, width, depth)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(width << (i + 1), width << i, 2, stride=2)
                                 for i in reversed(range(depth)))
        self.decs = nn.ModuleList(conv_block(width << (i + 1), width << i) for i in reversed(range(depth)))
        self.head = nn.Sequential(nn.Conv2d(width, 4 * in_ch, 3, padding=1), nn.PixelShuffle(2))
        # Optional full-resolution refinement of (input, coarse output): the rest of the net runs at
        # half resolution or less, and antialiased stroke edges live at the pixel scale.
        self.refine = nn.Sequential(nn.Conv2d(2 * in_ch, refine, 3, padding=1),
                                    nn.LeakyReLU(0.1, inplace=True),
                                    nn.Conv2d(refine, in_ch, 3, padding=1)) if refine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        feats = self.encoder(xp)
        y = feats.pop()
        for up, dec in zip(self.ups, self.decs):
            y = dec(torch.cat([up(y), feats.pop()], dim=1))
        out = xp + self.head(y)
        if self.refine is not None:
            out = out + self.refine(torch.cat([xp, out], dim=1))
        return out[..., :h, :w]
