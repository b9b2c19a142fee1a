"""The autoencoder's typed config (`python -m src.pretrain_autoencoder` flags) and its presets."""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, ClassVar

VARIANTS = {"base": "ae_base", "sparse": "ae_sparse", "vae": "vae"}   # --variant -> registry.MODELS name


@dataclass
class AutoencoderConfig:
    preset: str = "default"
    variant: str = "base"          # base | sparse | vae
    # data
    data: str = "competition/digit-recognizer"  # MNIST IDX folder, Digit Recognizer train.csv or its folder
    test_fraction: float = 1 / 7   # CSV only: share of train.csv held out as the test set
    invert: bool = False           # dark digits on white, like the documents' ink on paper
    seed: int = 0                  # initial weights and digit draws
    # model (the encoder is the denoiser's: keep --width equal to the denoiser's for --init-from)
    width: int = 32                # channels at the first level
    # One 2x downsampling after the stem (28 -> 14 -> 7): twice the digits/s of depth 2 and a better
    # MSE per digit, so the curve flattens inside the 10-minute budget (docs/mnist.md); the denoiser takes
    # the stem and its first level from it.
    depth: int = 1                 # number of 2x downsamplings
    code: int = 32                 # code units
    dropout: float = 0.1           # sparse only: dropout on the encoder features
    l1: float = 3e-2               # sparse only: weight of mean |code| in the loss (BCE per pixel ~0.07)
    kl_weight: float = 1.0         # vae only: weight of the KL term (1 = the Bernoulli ELBO)
    # optimisation
    epochs: int = 40               # epochs of --steps-per-epoch steps
    steps_per_epoch: int = 200     # optimiser steps per epoch
    batch_size: int = 64           # 40 x 200 x 64 = 512k digits (8.5 passes over MNIST)
    # low enough for the noisier sparse and vae runs to flatten within the budget too (docs/mnist.md)
    lr: float = 1.5e-3             # peak learning rate of AdamW
    weight_decay: float = 1e-4     # AdamW's decoupled weight decay
    beta2: float = 0.999           # Adam's second-moment decay (docs/mnist.md's figures are measured with it)
    warmup_epochs: float = 0.3     # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0         # cap on the gradient norm
    clip_factor: float = 0.0       # >0: also to this many times its running mean (src/training/loop.py)
    # evaluation
    val_every: int = 1             # evaluate every this many epochs, and after the last
    eval_digits: int = 2000        # test digits scored after each epoch (0 = all); metrics.md uses all
    train_eval_digits: int = 2000  # fixed train digits scored after each epoch (train MSE/accuracy curves)
    probe_digits: int = 10000      # train digits the linear probe is fitted on (0 = all)
    # runtime
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: bool = True               # mixed precision: CUDA, and CPUs with native bf16 (AVX512-BF16/AMX)
    compile: bool = False          # torch.compile the model (CUDA)
    workers: int = -1              # DataLoader workers; -1: 0 on CPU, a few on CUDA (src/training/loop.py)
    threads: int = 0               # CPU threads for torch; 0 = all cores
    models_dir: str = "models"     # where checkpoints go
    results_dir: str = "results/mnist"  # figures and metrics go to <results_dir>/<variant>/, or /<name>/
    name: str = ""                 # checkpoint stem and results folder; empty = mnist_<variant>
    resume: bool = False           # continue from <models_dir>/<name>_last.pt with the same flags

    limits: ClassVar[dict] = {"depth": (1, True, math.inf, True)}  # the dense code needs one level
    choices: ClassVar[dict] = {"variant": tuple(VARIANTS)}


# "default" fits in 10 minutes on 2 CPU cores (benchmarks/bench_autoencoders.py); "full" is for a GPU.
AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(width=8, code=8, batch_size=16, steps_per_epoch=3, epochs=2, eval_digits=48,
                  train_eval_digits=48, probe_digits=200),
    "default": dict(),
    "full": dict(epochs=30, steps_per_epoch=938),   # 30 passes over MNIST
}
