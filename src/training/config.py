"""The denoiser's typed config (`python -m src.train_denoiser` flags) and its presets."""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, ClassVar


@dataclass
class DenoiserConfig:
    preset: str = "quick"
    # model
    model: str = "unet"            # network name (src.models.registry)
    width: int = 32                # channels at the first level
    depth: int = 3                 # number of 2x downsamplings
    refine: int = 16               # channels of a full-resolution refinement block (0: none)
    init_from: str = ""            # MNIST autoencoder checkpoint whose encoder starts this model
    # data
    data_dir: str = "competition"  # folder with the competition zip(s) or their extracted folders
    patch_size: int = 128          # side of the square training patches, px
    batch_size: int = 2            # patches per step; 2 learns most per patch, 4 per step (docs/recipe.md)
    steps_per_epoch: int = 450     # optimiser steps per epoch
    photometric: float = 0.0       # chance of brightness/contrast/noise input jitter (hurts: docs/recipe.md)
    flips: bool = False            # 8 flips/turns of each patch; off: text is never mirrored (docs/recipe.md)
    val_fraction: float = 0.15     # share of pages held out (as --split-by says); 0 trains on every pair
    folds: int = 0                 # >1: K-fold split (as --split-by says), validate on fold --fold
    fold: int = 0                  # which of the --folds folds is held out
    seed: int = 0                  # initial weights and patch draws
    split_seed: int = 0            # which pages are held out: fixed while --seed varies, so seeds compare
    split_by: str = "page"         # page | text: a text's pages (identical clean twins) all on one side
    degraded: float = 0.0          # share of patches from Augraphy-degraded pages (src/data/degraded.py)
    degraded_epochs: int = 0       # epochs with that share, from the first; 0: all
    degraded_late: float = 0.0     # the share after those: a low one lets the last epochs fit the competition
    degraded_pages: int = 600      # pages in that set: the training split's clean pages and rendered text
    degraded_seed: int = 0         # the rendered texts and the degradations of that set
    degraded_dir: str = ".cache/degraded"   # where that set is kept: built once per settings, then read
    zoom: float = 0.0              # share of patches enlarged (cubic): text as larger scans show it
    zoom_max: float = 3.0          # by up to this factor (log-uniform from 1)
    # optimisation
    epochs: int = 14               # epochs of --steps-per-epoch steps
    lr: float = 1e-3               # peak learning rate of AdamW (higher spikes at batch 2: docs/recipe.md)
    weight_decay: float = 1e-4     # AdamW's decoupled weight decay
    beta2: float = 0.99            # Adam's second-moment decay: 0.999 spikes at batch 2 (docs/recipe.md)
    warmup_epochs: float = 0.5     # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0         # cap on the gradient norm
    clip_factor: float = 4.0       # and to this many times its running mean: no loss spikes (docs/recipe.md)
    loss: str = "clipped_mse"      # clipped_mse (overshooting white/black is free) | clipped_l1 | mse
    # validation: the same tiled inference the submission uses
    tile: int = 1024               # tile side, px; 1024 takes a competition page whole (docs/recipe.md)
    overlap: int = 32              # px shared by neighbouring tiles, blended
    tta: bool = True               # average over flips when validating (make_submission does by default)
    val_every: int = 7             # validate every this many epochs, and after the last
    # runtime
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: bool = True               # mixed precision: CUDA, and CPUs with native bf16 (AVX512-BF16/AMX)
    compile: bool = False          # torch.compile the model (CUDA)
    cuda_graph: bool = True        # CUDA, one process, no --compile: each step one CUDA graph (docs/gpu.md)
    workers: int = -1              # DataLoader workers; -1: 0 on CPU, a few on CUDA (src/training/loop.py)
    threads: int = 0               # CPU threads for torch; 0 = all cores
    models_dir: str = "models"     # where checkpoints and plots go
    name: str = "denoiser"         # checkpoints are <models_dir>/<name>_best.pt and _last.pt
    resume: bool = False           # continue from <models_dir>/<name>_last.pt with the same flags

    # per-config changes to LIMITS: --degraded 1 would leave the competition's pages out altogether
    limits: ClassVar[dict] = {"degraded": (0, True, 1, False), "zoom": (0, True, 1, True),
                              "depth": (0, True, 6, True),   # 7: 4096 channels at the bottom (width 32)
                              "zoom_max": (1, True, 8, True), "degraded_late": (0, True, 1, False),
                              "degraded_seed": (0, True, math.inf, True),
                              "degraded_epochs": (0, True, math.inf, True),
                              "degraded_pages": (1, True, math.inf, True)}
    # the names a field accepts, checked when parsing, not after the pages are loaded (tests/test_config
    # keeps these equal to src.training.losses.LOSSES and the denoisers of src.models.registry.MODELS)
    choices: ClassVar[dict] = {"model": ("unet",), "loss": ("clipped_mse", "clipped_l1", "mse"),
                               "split_by": ("page", "text")}

    def degraded_shares(self) -> list[float]:
        """Each epoch's share of patches from degraded pages (--degraded, then --degraded-late)."""
        until = self.degraded_epochs or self.epochs
        return [self.degraded if epoch < until else self.degraded_late for epoch in range(self.epochs)]

    def model_config(self) -> dict[str, Any]:
        """The keyword arguments of `build_model(self.model, ...)`, as stored in checkpoints."""
        return dict(width=self.width, depth=self.depth, refine=self.refine)


# Presets are tuned on 2 CPU cores (docs/results.md); on a GPU the same recipes run with AMP.
DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(width=8, depth=2, patch_size=48, batch_size=4, steps_per_epoch=3, epochs=2, val_every=1,
                  tile=128, overlap=16),
    "quick": dict(),
    "full": dict(epochs=60, steps_per_epoch=1200, val_every=5),
    # 1.43x quick's steps, 40% of the patches from degraded pages (noise the competition never shows),
    # then 10% in the last 5 epochs, which fit the competition's pages. The L1 loss, as a degraded
    # patch's squared error is some twenty times a competition patch's and a few of them would steer
    # the steps: 18 % lower RMSE on the competition's pages than with clipped_mse (docs/general.md)
    # named after the preset, so that it never takes the place of the competition model (models/denoiser_*)
    # and `denoise` finds it (src.inference.scale.DEFAULT_CHECKPOINTS)
    "general": dict(steps_per_epoch=643, degraded=0.4, degraded_epochs=9, degraded_late=0.1,
                    loss="clipped_l1", name="general"),
}
# twice general's epochs, the same shares in the same proportion: lower RMSE on the unseen noise and on the
# competition's pages alike, for 8.4 min (docs/general.md)
DENOISER_PRESETS["general-long"] = dict(DENOISER_PRESETS["general"], epochs=28, val_every=7,
                                        degraded_epochs=18, name="general_long")
# the model for scans at any resolution (`denoise`'s default): general-long with half the patches enlarged
# 1-3.2x, so that text as a 150-300 dpi scan shows it is cleaned as it is, not shrunk (docs/denoise.md)
DENOISER_PRESETS["scans"] = dict(DENOISER_PRESETS["general-long"], zoom=0.5, zoom_max=3.2, name="scans")
