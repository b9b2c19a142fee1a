"""Whole-page prediction from overlapping tiles: the one function validation and submission share."""
from __future__ import annotations

from collections.abc import Callable, Sequence
import copy
import functools

import numpy as np
import torch
from torch import nn

from src.models.unet import UNet


# `denoise`: a page that fits in a tile of WHOLE px is cleaned whole, as make_submission cleans the
# competition's; a larger one in tiles of TILE px: 1.3-1.8x as fast as in tiles of WHOLE px on 2 cores at
# the same RMSE within 0.2 %, as a batch of large tiles outgrows the cores' caches and tiles of WHOLE px
# cover a page a little larger than one twice over (docs/denoise.md)
WHOLE, TILE = 1024, 512


def tile_for(shape: tuple[int, int], factor: float) -> int:
    """The tile side for a page of `shape` cleaned at 1/`factor` of its size (`denoise --tile 0`)."""
    return WHOLE if max(shape) / factor <= WHOLE else TILE


def check_tiling(tile: int, overlap: int) -> None:
    """ValueError unless 0 <= overlap < tile: overlap >= tile would step 1 px at a time (hours a page)."""
    if tile < 1:
        raise ValueError(f"tile={tile}: must be at least 1")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap={overlap}: must be at least 0 and below tile={tile}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` overlapping by at least `overlap`."""
    check_tiling(tile, overlap)
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def ramp(length: int, overlap: int) -> np.ndarray:
    """1-D blending weight: rises linearly over `overlap` pixels at each end, 1 inside, never 0."""
    i = np.arange(length, dtype=np.float64)
    edge = np.minimum(i + 0.5, length - i - 0.5) / max(overlap, 1)
    return np.clip(edge, 0.0, 1.0)


# (rows, columns) a page is moved down and right by for each extra view of `shifts`. The U-Net halves
# the resolution four times (space-to-depth stem, then a pooling per level), so a page moved by an odd
# number of pixels meets other sampling grids at every scale; each of these is odd in rows, in columns,
# or in both. Held-out texts, one `full` model, consensus: 0.00689 without, 0.00673 with the first,
# 0.00666 with all three; one even move such as (4, 4) gains a quarter to a third of what one odd move
# gains (README: *Shifted views*).
SHIFTS = ((3, 5), (5, 2), (6, 7))


def _flips(tta: bool) -> list[tuple[int, ...]]:
    return [(), (-1,), (-2,), (-2, -1)] if tta else [()]


@functools.cache
def cpu_bf16() -> bool:
    """Whether bf16 convolutions beat fp32 ones on this CPU: those of oneDNN's AMX kernels ran a U-Net
    view 3.1x as fast; with AVX512-BF16 but no AMX they were 1.4x slower than fp32, and emulated
    (AVX512 alone) 4x slower (docs/inference_speed.md)."""
    # a private probe (torch 2.1 on): an older torch, such as a Kaggle image may hold, keeps fp32
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return torch.backends.mkldnn.is_available() and amx is not None and amx()


@torch.inference_mode()
def predict_page(models: nn.Module | Sequence[nn.Module], page: np.ndarray, *, tile: int = 1024,
                 overlap: int = 32, batch_size: int = 4, tta: bool = False, shifts: int = 0,
                 device: str | torch.device = "cpu", amp: bool = False,
                 views: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Predict a clean page from a noisy one.

    Tiles of `tile` x `tile` (clipped to the page) overlap by `overlap` px; each tile's prediction is
    weighted by a ramp that fades towards its edges, where a convolution sees padding instead of
    context, and the weighted sum is divided by the summed weights, so no seam shows and a model that
    returns its input gives the page back exactly. Several models (a fold ensemble), flip TTA and
    `shifts` moved copies of the page (the first `shifts` of SHIFTS, padded by reflection and cropped
    back) are averaged.

    Args:
        models: one model or a sequence; each maps (N, 1, h, w) -> (N, 1, h, w) and is in eval mode.
        page: (H, W) float array in [0, 1].
        batch_size: tiles per forward pass.
        amp: mixed precision where it is fast and keeps the page's correction precise: fp16 autocast on
            CUDA; on a CPU with AMX (`cpu_bf16`), a U-Net's body in bf16 and its last layer in fp32
            (`_fp32_last_layer`); otherwise fp32.
        views: also return each model's prediction under each flip and shift, for the consensus.
    Returns: (H, W) float32 in [0, 1]; with views, that and the (shifts x models x flips, H, W) views,
    each tiled and blended alike.
    """
    check_tiling(tile, overlap)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    if not 0 <= shifts <= len(SHIFTS):
        raise ValueError(f"shifts={shifts}: must be 0 to {len(SHIFTS)}")
    models = [models] if isinstance(models, nn.Module) else list(models)
    page = np.asarray(page, dtype=np.float32)
    device = torch.device(device)
    nets = [_forward(model, device, amp) for model in models]
    moved = [_tiled(nets, np.pad(page, ((dy, 0), (dx, 0)), mode="reflect"), tile, overlap, batch_size,
                    tta, device, views)[:, dy:, dx:] for dy, dx in ((0, 0), *SHIFTS[:shifts])]
    if not views:
        return np.mean(moved, axis=0, dtype=np.float32)[0]
    return np.mean([m[0] for m in moved], axis=0, dtype=np.float32), np.concatenate([m[1:] for m in moved])


def non_finite(pred: np.ndarray) -> str | None:
    """What is wrong with a prediction holding NaN (predict_page makes any inf one), worded for the user
    with its likely cause and remedy; None when every pixel is finite. Callers refuse such a page, name
    it and write nothing: written, NaN would become black or white pixels and hide the fault."""
    bad = int((~np.isfinite(pred)).sum())
    return (f"the model predicted {bad:,} NaN or inf pixels (a broken checkpoint, or fp16 overflowing on a "
            f"GPU: try --no-amp)") if bad else None


class _Float32(nn.Module):
    """A layer run in fp32 inside an autocast region: its input cast up, its output left in fp32."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


def _fp32_last_layer(model: nn.Module) -> nn.Module | None:
    """A copy of a U-Net whose last layer (its refinement, else its head) runs in fp32 under bf16
    autocast; None for any other model, whose output layer is unknown and which stays fp32.

    bf16 keeps 8 significant bits. The refinement sees the page and the coarse output, and a page's
    0.9 rounded to bf16 is up to 2e-3 off; the U-Net's residual addition is fp32 anyway (the page is).
    Held-out pages, `quick` model, consensus: all in bf16 0.2 % higher RMSE than fp32, the last layer
    in fp32 0.08 %, for 15-18 % more time a view (docs/inference_speed.md).
    """
    if not isinstance(model, UNet):
        return None
    # the caller's model stays as it was; the copy shares its weights (copying them took 10 ms a page)
    model = copy.deepcopy(model, {id(t): t for t in (*model.parameters(), *model.buffers())})
    if model.refine is not None:
        model.refine = _Float32(model.refine)
    else:
        model.head = _Float32(model.head)
    return model


def _forward(model: nn.Module, device: torch.device, amp: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as a function of a batch, in the precision `amp` picks there (predict_page), giving fp32
    with NaN for any inf (else the clamps would make an overflow white or black)."""
    dtype = None
    if amp and device.type == "cuda":
        # fp16 even for models trained in bf16: the correction a model adds to its page keeps 11
        # significant bits, not 8 (bf16 rounds a 0.3 change by up to 1e-3, a sixth of the consensus
        # RMSE); an overflow's inf becomes NaN, which the commands refuse (`non_finite`), naming the page
        dtype = torch.float16
    elif amp and device.type == "cpu" and cpu_bf16():
        mixed = _fp32_last_layer(model)
        model, dtype = (model, None) if mixed is None else (mixed, torch.bfloat16)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            y = model(x).float()
        return torch.where(y.isfinite(), y, torch.nan)
    return forward


def _tiled(nets: list[Callable[[torch.Tensor], torch.Tensor]], page: np.ndarray, tile: int, overlap: int,
           batch_size: int, tta: bool, device: torch.device, views: bool) -> np.ndarray:
    """(1 + views, H, W) float32: the page's averaged prediction, then each model's under each flip."""
    H, W = page.shape
    th, tw = min(tile, H), min(tile, W)
    # a side shorter than the tile is one tile whatever the overlap: clip it for tile_starts' guard
    boxes = [(y, x) for y in tile_starts(H, th, min(overlap, th - 1))
             for x in tile_starts(W, tw, min(overlap, tw - 1))]
    flips = _flips(tta)
    n_views = len(nets) * len(flips)
    if len(boxes) > 1:
        weight = np.outer(ramp(th, overlap), ramp(tw, overlap))
        acc = np.zeros((1 + n_views if views else 1, H, W), np.float64)   # the average first, then the views
        norm = np.zeros((H, W), np.float64)
    # a forward pass per flip: on a CPU the four flips of a page in one pass took a third longer a view
    # than a pass each (larger activations fall out of the caches; docs/inference_speed.md)
    for b in range(0, len(boxes), batch_size):
        chunk = boxes[b:b + batch_size]
        x = torch.from_numpy(np.stack([page[y:y + th, x0:x0 + tw] for y, x0 in chunk]))[:, None].to(device)
        pred, each = torch.zeros_like(x, dtype=torch.float32), []
        for net in nets:
            for dims in flips:
                yi = net(x.flip(dims) if dims else x)
                yi = yi.flip(dims) if dims else yi
                pred += yi
                if views:
                    each.append(yi.clamp(0, 1))
        pred = (pred / n_views).clamp_(0, 1)
        tiles = torch.cat([pred, *each], 1).cpu().numpy()   # (N, 1 or 1 + n_views, th, tw)
        if len(boxes) == 1:   # the page is one tile: its weight would be 1 everywhere, and their sum 1
            return tiles[0]
        for (y, x0), t in zip(chunk, tiles):
            acc[:, y:y + th, x0:x0 + tw] += weight * t
            norm[y:y + th, x0:x0 + tw] += weight
    return (acc / norm).astype(np.float32)
