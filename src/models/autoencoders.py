"""MNIST autoencoders whose encoder is the denoiser's: pretrain on digits, then `--init-from`.

All three share `src.models.blocks.Encoder` under the attribute `encoder`, so their `encoder.*`
weights load into `UNet(width=W, depth>=D)` (`src.models.checkpoints.init_encoder_from`). Input
(N, 1, size, size) in [0, 1] (size 28 for MNIST); it is padded by replication to the encoder's
multiple (28 stays 28 at depth 1, becomes 32 at depth 2), flattened at the deepest level into a
dense code, decoded back to the padded size and cropped. Outputs are in [0, 1] (sigmoid).

    ae_base    code = Linear(features): a plain convolutional autoencoder.
    ae_sparse  code = ReLU(Linear(dropout(features))): with the L1 penalty of `loss_terms` many
               code units are exactly zero for a given digit (a linear code would only shrink).
    vae        mu, logvar = two Linear heads; z = mu + exp(logvar / 2) * eps while training, mu in
               eval mode; Bernoulli decoder (BCE) + kl_weight * KL(q(z|x) || N(0, I)); `sample(n)`
               decodes draws from N(0, I).

`forward(x)` returns the reconstruction; `forward(x, with_code=True)` returns (reconstruction, aux)
with aux["code"] (N, code) (the mean for the vae), aux["logits"] and, for the vae, aux["mu"] and
aux["logvar"]. The loss goes through `forward`, so DistributedDataParallel sees every call.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from src.models.blocks import Encoder, conv_block


class ConvAutoencoder(nn.Module):
    """Encoder(width, depth) -> dense code of `code` units -> mirrored decoder."""

    def __init__(self, in_ch: int = 1, width: int = 32, depth: int = 1, code: int = 32, size: int = 28,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        multiple = 2 ** (depth + 1)
        self.size, self.padded, self.code_size = size, -(-size // multiple) * multiple, code
        self.deep_ch, self.deep_hw = width << depth, self.padded // multiple
        features = self.deep_ch * self.deep_hw ** 2
        self.encoder = Encoder(in_ch, width, depth)
        self.dropout = nn.Dropout(dropout)
        self.bottleneck = self.make_heads(features, code)
        self.code_activation: nn.Module = nn.Identity()
        self.expand = nn.Sequential(nn.Linear(code, features), nn.LeakyReLU(0.1, inplace=True))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(width << (i + 1), width << i, 2, stride=2)
                                 for i in reversed(range(depth)))
        self.decs = nn.ModuleList(conv_block(width << i, width << i) for i in reversed(range(depth)))
        self.head = nn.Sequential(nn.Conv2d(width, 4 * in_ch, 3, padding=1), nn.PixelShuffle(2))
        init_weights(self)

    def make_heads(self, features: int, code: int) -> nn.Module:
        return nn.Linear(features, code)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, size, size) -> (N, deep_ch * deep_hw**2), the flattened deepest encoder level."""
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected images of {self.size}x{self.size}, got {tuple(x.shape[-2:])}; "
                             f"build the model with size={x.shape[-1]}")
        p = self.padded - self.size
        if p:
            x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), mode="replicate")
        return self.dropout(self.encoder(x)[-1].flatten(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, size, size) -> code (N, code)."""
        return self.code_activation(self.bottleneck(self.features(x)))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        y = self.expand(z).view(-1, self.deep_ch, self.deep_hw, self.deep_hw)
        for up, dec in zip(self.ups, self.decs):
            y = dec(up(y))
        o = (self.padded - self.size) // 2
        return self.head(y)[..., o:o + self.size, o:o + self.size]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """code (N, code) -> images (N, C, size, size) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, with_code: bool = False):
        code = self.encode(x)
        logits = self.decode_logits(code)
        recon = torch.sigmoid(logits)
        return (recon, {"code": code, "logits": logits}) if with_code else recon


class SparseAutoencoder(ConvAutoencoder):
    """ReLU code (exact zeros) and dropout on the encoder features; the L1 penalty is in the loss."""

    def __init__(self, in_ch: int = 1, width: int = 32, depth: int = 1, code: int = 32, size: int = 28,
                 dropout: float = 0.1):
        super().__init__(in_ch, width, depth, code, size, dropout)
        self.code_activation = nn.ReLU()
        # Every unit starts active: a ReLU unit negative for every digit gets no gradient and stays
        # dead, which would count as "sparsity" while only shrinking the code.
        nn.init.constant_(self.bottleneck.bias, 0.5)


class VariationalAutoencoder(ConvAutoencoder):
    """Gaussian posterior q(z|x) = N(mu, exp(logvar)), prior N(0, I), Bernoulli decoder."""

    def make_heads(self, features: int, code: int) -> nn.Module:
        return nn.Linear(features, 2 * code)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.bottleneck(self.features(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)  # keeps exp() finite early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean (N, code): the deterministic code used for plots and probes."""
        return self.posterior(x)[0]

    def forward(self, x: torch.Tensor, with_code: bool = False):
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        logits = self.decode_logits(z)
        recon = torch.sigmoid(logits)
        return (recon, {"code": mu, "mu": mu, "logvar": logvar, "logits": logits}) if with_code else recon

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new digits (n, C, size, size) in [0, 1], decoded from z ~ N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.code_size, generator=generator).to(device)
        return self.decode(z)


def init_weights(model: nn.Module, slope: float = 0.1) -> None:
    """He initialisation for LeakyReLU(slope), zero biases.

    PyTorch's default init shrinks the signal by about 1/sqrt(3) per layer; the U-Net survives that
    through its skips, but a bottleneck with no skip then starts from a code near zero and a plain
    MSE autoencoder sits at the all-black output for hundreds of steps.
    """
    gain = (2.0 / (1.0 + slope ** 2)) ** 0.5
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            w = m.weight
            # inputs per output value: a stride-k transposed conv of kernel k adds one tap per channel
            fan_in = w.shape[0] if isinstance(m, nn.ConvTranspose2d) else w[0].numel()
            nn.init.normal_(w, 0.0, gain / fan_in ** 0.5)
            nn.init.zeros_(m.bias)


AUTOENCODERS: dict[str, type[nn.Module]] = {
    "ae_base": ConvAutoencoder,
    "ae_sparse": SparseAutoencoder,
    "vae": VariationalAutoencoder,
}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over code units, (N, code) -> (N,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def loss_terms(x: torch.Tensor, recon: torch.Tensor, aux: dict, l1: float = 0.0,
               kl_weight: float = 1.0) -> dict:
    """The training objective and its parts (0-dim tensors) from `forward(x, with_code=True)`.

    Reconstruction: binary cross-entropy per pixel on the logits (a Bernoulli likelihood; pixels in
    [0, 1]). Unlike MSE through a sigmoid, its gradient (recon - x) does not vanish when the output
    saturates, so a large early step cannot park the model at an all-black image.
    ae_sparse: + l1 * mean |code| (the sparsity penalty; 0 turns it off).
    vae: + kl_weight * KL / pixels per image; kl_weight = 1 makes the loss the exact negative ELBO
    of a Bernoulli decoder divided by the number of pixels.
    """
    rec = F.binary_cross_entropy_with_logits(aux["logits"], x)
    if "logvar" in aux:
        penalty = kl_weight * kl_divergence(aux["mu"], aux["logvar"]).mean() / x[0].numel()
    else:
        penalty = l1 * aux["code"].abs().mean() if l1 else torch.zeros((), device=x.device)
    return {"loss": rec + penalty, "recon": rec, "penalty": penalty}


def autoencoder_loss(net: nn.Module, x: torch.Tensor, l1: float = 0.0, kl_weight: float = 1.0) -> dict:
    """`loss_terms` of one call to `net` (the model, or its DDP / compiled wrapper)."""
    return loss_terms(x, *net(x, with_code=True), l1=l1, kl_weight=kl_weight)
