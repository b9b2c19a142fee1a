"""Pretrain an MNIST autoencoder whose encoder starts the denoiser.

    python -m src.pretrain_autoencoder --variant base|sparse|vae --data DIR_OR_CSV [--flag value ...]
    python -m src.train_denoiser --init-from models/mnist_base.pt      # then: transfer

--data is a folder with the four MNIST IDX files (raw or .gz), Digit Recognizer's train.csv, or a
folder holding it (see src.mnist). Leaves `<models_dir>/mnist_<variant>_best.pt`, `_last.pt` and
`mnist_<variant>.pt` (the best weights, for --init-from), and in `<results_dir>/<variant>/`
(`<results_dir>/<name>/` for a --name of its own):
loss_curves.png, accuracy_curves.png, reconstructions_epoch1.png, reconstructions_last.png,
code_space.png, manifold.png (the decoded 2-D PCA plane of the code), samples.png (vae only),
metrics.json and metrics.md.

Definitions (the numbers of metrics.md and of the curves):
  reconstruction MSE   mean over test digits and pixels of (reconstruction - input)^2, pixels in
                       [0, 1]; the vae reconstructs from its posterior mean.
  pixel accuracy       share of pixels whose reconstruction falls on the same side of 0.5 as the
                       input pixel: (reconstruction > 0.5) == (input > 0.5). 87% of MNIST pixels
                       are <= 0.5 (81% are 0), so an all-black output already scores 0.87.
  objective            what the model is trained on (src.autoencoders.loss_terms): BCE per pixel,
                       + l1 * mean |code| (sparse) or + kl_weight * KL / 784 (vae).
  train curves         the objective averaged over each epoch's batches (train mode), and
                       MSE / accuracy of a fixed subset of `train_eval_digits` train digits in eval
                       mode; test curves use a fixed subset of `eval_digits` test digits (0 = all).
                       metrics.md scores the best checkpoint on every test digit.
  near-zero code       share of (test digit, code unit) entries with |code| < 0.01 (NEAR_ZERO); dead
                       units: units below that for every test digit. The vae's code is its mean mu.
  linear probe         accuracy on the test digits of a logistic regression (scikit-learn,
                       standardised codes) fitted on the codes of `probe_digits` train digits.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from src.autoencoders import autoencoder_loss, loss_terms
from src.checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint
from src.config import check_config, parse_config
from src.data import DataError
from src.files import atomic_write, ensure_writable_dir
from src.mnist import Digits, load_digits
from src.mnist_plots import (pca_grid, plot_accuracy_curves, plot_code_space, plot_digit_grid,
                             plot_loss_curves, plot_reconstructions)
from src.models import build_model, count_parameters
from src.train import checkpoint_paths, fit, run_command, schedule_text, setup_runtime

VARIANTS = {"base": "ae_base", "sparse": "ae_sparse", "vae": "vae"}   # --variant -> src.models.MODELS
NEAR_ZERO = 1e-2


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
    # MSE per digit, so the curve flattens inside the 10-minute budget (README); the denoiser takes
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
    # 3e-3 left sparse and vae still falling 6-9 % over the last quarter (README)
    lr: float = 1.5e-3             # peak learning rate of AdamW
    weight_decay: float = 1e-4     # AdamW's decoupled weight decay
    beta2: float = 0.999           # Adam's second-moment decay (README's autoencoder figures used 0.999)
    warmup_epochs: float = 0.3     # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0         # cap on the gradient norm
    clip_factor: float = 0.0       # >0: also to this many times its running mean (see src.train.GradClip)
    # evaluation
    val_every: int = 1             # evaluate every this many epochs, and after the last
    eval_digits: int = 2000        # test digits scored after each epoch (0 = all); metrics.md uses all
    train_eval_digits: int = 2000  # fixed train digits scored after each epoch (train MSE/accuracy curves)
    probe_digits: int = 10000      # train digits the linear probe is fitted on (0 = all)
    # runtime
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: bool = True               # mixed precision: CUDA, and CPUs with native bf16 (AVX512-BF16/AMX)
    compile: bool = False          # torch.compile the model (CUDA)
    workers: int = -1              # DataLoader workers; -1: 0 on CPU, a few on CUDA (train.loader_workers)
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


class DigitDataset(Dataset):
    """`length` (image (1, H, W) float32 in [0, 1], label) items per epoch.

    The order is a permutation drawn from a generator seeded by (seed, epoch, rank), so an epoch is
    the same in a resumed run; an epoch longer than the data chains several permutations.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, length: int, seed: int = 0, rank: int = 0):
        if len(images) == 0:
            raise ValueError("no training digits")
        self.images, self.labels = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
        self.length, self.seed, self.rank = length, seed, rank
        self.epoch, self._order, self._order_epoch = 0, None, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank])
            n = len(self.images)
            self._order = np.concatenate([rng.permutation(n) for _ in range(-(-self.length // n))])
            self._order_epoch = self.epoch
        return self._order

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        j = int(self.order()[i])
        return self.images[j], self.labels[j]


def fixed_subset(n: int, size: int, seed: int) -> np.ndarray:
    """`size` sorted indices of range(n) (all when size is 0 or >= n), the same for every call."""
    if size <= 0 or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def showcase(labels: np.ndarray, per_digit: int = 2) -> np.ndarray:
    """The first `per_digit` test digits of each class 0-9: the digits every reconstruction shows."""
    picks = [np.flatnonzero(labels == d)[:per_digit] for d in range(10)]
    return np.array([p[k] for k in range(per_digit) for p in picks if len(p) > k], dtype=np.int64)


@torch.no_grad()
def run_model(model, images: np.ndarray, device, l1: float, kl_weight: float, batch: int = 500) -> dict:
    """Eval-mode pass over images (N, H, W): reconstructions (N, H, W), codes (N, code), mean objective."""
    model.eval()
    recons, codes, loss = [], [], 0.0
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).unsqueeze(1).to(device)
        recon, aux = model(x, with_code=True)
        loss += loss_terms(x, recon, aux, l1, kl_weight)["loss"].item() * len(x)
        recons.append(recon[:, 0].float().cpu().numpy())
        codes.append(aux["code"].float().cpu().numpy())
    return {"recon": np.concatenate(recons), "code": np.concatenate(codes),
            "loss": loss / max(len(images), 1)}


def pixel_scores(images: np.ndarray, recons: np.ndarray) -> dict:
    """Reconstruction MSE (float64) and pixel accuracy (same side of 0.5), images (N, H, W) in [0, 1]."""
    diff = recons.astype(np.float64) - images
    return {"mse": float(np.mean(diff ** 2)), "acc": float(np.mean((recons > 0.5) == (images > 0.5)))}


def code_sparsity(codes: np.ndarray, threshold: float = NEAR_ZERO) -> dict:
    """Share of near-zero code entries and the number of units near zero for every digit."""
    small = np.abs(codes) < threshold
    return {"code_near_zero": float(small.mean()), "dead_units": int(small.all(axis=0).sum())}


def linear_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on standardised codes (how linearly digits separate)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_labels)) < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(train_codes, train_labels)
    return float(probe.score(test_codes, test_labels))


def make_evaluate(digits: Digits, cfg: AutoencoderConfig, device):
    """model -> {"score": test MSE, test/train MSE, accuracy, objective}."""
    l1, kl = loss_weights(cfg)
    test_idx = fixed_subset(len(digits.test_images), cfg.eval_digits, cfg.seed)
    train_idx = fixed_subset(len(digits.train_images), cfg.train_eval_digits, cfg.seed + 1)

    def evaluate(model) -> dict:
        test_x, train_x = digits.test_images[test_idx], digits.train_images[train_idx]
        test, train = run_model(model, test_x, device, l1, kl), run_model(model, train_x, device, l1, kl)
        ts, tr = pixel_scores(test_x, test["recon"]), pixel_scores(train_x, train["recon"])
        return {"score": ts["mse"], "test_mse": ts["mse"], "test_acc": ts["acc"], "test_loss": test["loss"],
                "train_mse": tr["mse"], "train_acc": tr["acc"]}
    return evaluate


def draw_first_epoch(model, digits: Digits, cfg: AutoencoderConfig, out_dir: Path, device) -> Path:
    """fit's after_epoch for epoch 1 (index 0): run whether or not --val-every evaluates after it."""
    shown = digits.test_images[showcase(digits.test_labels)]
    return draw_reconstructions(model, shown, device, out_dir / "reconstructions_epoch1.png",
                                f"{cfg.variant}: after epoch 1")


def results_folder(cfg: AutoencoderConfig) -> Path:
    """<results_dir>/<variant>/ for the default name, <results_dir>/<name>/ for any other.

    Named by the run so that a --name run does not replace another run's figures and metrics.
    """
    if cfg.name == f"mnist_{cfg.variant}":
        return Path(cfg.results_dir) / cfg.variant
    if cfg.name in VARIANTS:
        raise ValueError(f"--name {cfg.name}: {Path(cfg.results_dir) / cfg.name}/ holds the results of the "
                         f"default {cfg.name} run; choose another name")
    return Path(cfg.results_dir) / cfg.name


def draw_reconstructions(model, images: np.ndarray, device, path: Path, title: str) -> Path:
    recon = run_model(model, images, device, 0.0, 0.0)["recon"]
    return plot_reconstructions(images, recon, path, title)


def loss_weights(cfg: AutoencoderConfig) -> tuple[float, float]:
    """(l1, kl_weight) as the variant uses them: the L1 penalty only for sparse."""
    return (cfg.l1 if cfg.variant == "sparse" else 0.0), cfg.kl_weight


def model_config(cfg: AutoencoderConfig, size: int) -> dict:
    config = dict(width=cfg.width, depth=cfg.depth, code=cfg.code, size=size)
    return {**config, "dropout": cfg.dropout} if cfg.variant == "sparse" else config


def final_report(cfg: AutoencoderConfig, digits: Digits, result: dict, last_model, out_dir: Path,
                 device, t0: float) -> dict:
    """Score the best checkpoint on every test digit, draw the figures, write metrics.json/.md."""
    ckpt = load_checkpoint(result["best_path"], "autoencoder")
    published = Path(cfg.models_dir) / f"{cfg.name}.pt"
    save_checkpoint(published, {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler")})
    history = result["history"] or ckpt["history"]
    title = f"{cfg.variant} autoencoder"
    plot_loss_curves(history, out_dir / "loss_curves.png", title)
    plot_accuracy_curves(history, out_dir / "accuracy_curves.png", title)
    shown = digits.test_images[showcase(digits.test_labels)]
    draw_reconstructions(last_model, shown, device, out_dir / "reconstructions_last.png",
                         f"{cfg.variant}: after the last epoch ({len(history) and history[-1]['epoch']})")

    model = model_from_checkpoint(ckpt, result["best_path"]).to(device)
    l1, kl = loss_weights(cfg)
    test = run_model(model, digits.test_images, device, l1, kl)
    probe_idx = fixed_subset(len(digits.train_images), cfg.probe_digits, cfg.seed + 2)
    with torch.no_grad():
        train_codes = np.concatenate([
            model.encode(torch.from_numpy(digits.train_images[probe_idx[s:s + 500]]).unsqueeze(1).to(device))
            .float().cpu().numpy() for s in range(0, len(probe_idx), 500)])
    scores = pixel_scores(digits.test_images, test["recon"])
    best_row = min((r for r in history if "score" in r), key=lambda r: r["score"], default={})
    metrics = dict(variant=cfg.variant, model=VARIANTS[cfg.variant], test_mse=scores["mse"],
                   test_acc=scores["acc"], test_loss=test["loss"], **code_sparsity(test["code"]),
                   code_units=int(test["code"].shape[1]),
                   probe_acc=linear_probe(train_codes, digits.train_labels[probe_idx], test["code"],
                                          digits.test_labels, cfg.seed),
                   probe_train_digits=len(probe_idx), test_digits=len(digits.test_images),
                   epochs=len(history), best_epoch=best_row.get("epoch", ckpt["epoch"]),
                   train_s=round(sum(r.get("train_s", 0) + r.get("val_s", 0) for r in history), 1),
                   wall_s=0.0, parameters=count_parameters(model), checkpoint=str(published))
    codes_shown = fixed_subset(len(test["code"]), 5000, cfg.seed)
    plot_code_space(test["code"][codes_shown], digits.test_labels[codes_shown], out_dir / "code_space.png",
                    f"{title}: test codes")
    with torch.no_grad():
        grid = model.decode(torch.from_numpy(pca_grid(test["code"][codes_shown])).float().to(device))
    plot_digit_grid(grid[:, 0].float().cpu().numpy(), out_dir / "manifold.png",
                    f"{title}: decoded across the code's PCA plane (PC1 ->, PC2 ^)", cols=15)
    if cfg.variant == "vae":
        gen = torch.Generator().manual_seed(cfg.seed)
        samples = model.sample(64, generator=gen)[:, 0].float().cpu().numpy()
        plot_digit_grid(samples, out_dir / "samples.png", "vae: decoded from z ~ N(0, I)")
    metrics["wall_s"] = round(time.perf_counter() - t0, 1)  # the whole command but its imports
    write_metrics(metrics, out_dir)
    return metrics


def write_metrics(metrics: dict, out_dir: Path) -> None:
    atomic_write(out_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))
    header = ("| variant | test MSE | pixel accuracy | near-zero code | dead units | linear probe | "
              "epochs (best) | train time |\n|---|---|---|---|---|---|---|---|\n")
    atomic_write(out_dir / "metrics.md", lambda tmp: tmp.write_text(header + metrics_row(metrics) + "\n"))


def metrics_row(m: dict) -> str:
    return (f"| {m['variant']} | {m['test_mse']:.5f} | {m['test_acc']:.4f} | {m['code_near_zero']:.1%} | "
            f"{m['dead_units']}/{m['code_units']} | {m['probe_acc']:.4f} | "
            f"{m['epochs']} ({m['best_epoch']}) | "
            f"{m['train_s']:.0f} s |")


def summary_line(m: dict, out_dir: Path) -> str:
    return (f"{m['variant']}: test MSE {m['test_mse']:.5f}, pixel accuracy {m['test_acc']:.4f}, "
            f"near-zero code {m['code_near_zero']:.1%} ({m['dead_units']}/{m['code_units']} dead units), "
            f"linear probe {m['probe_acc']:.4f}, best epoch {m['best_epoch']}/{m['epochs']}, "
            f"{m['wall_s']:.0f} s -> {m['checkpoint']}, {out_dir}/")


def run(cfg: AutoencoderConfig, log=print) -> dict:
    """Train one variant and leave its checkpoints, figures and metrics; returns fit's result + metrics."""
    t0 = time.perf_counter()
    check_config(cfg)
    if not cfg.name:
        cfg = replace(cfg, name=f"mnist_{cfg.variant}")
    out_dir = results_folder(cfg)   # a --name it refuses is refused before the digits load
    rt = setup_runtime(cfg.device, cfg.threads)
    digits = load_digits(Path(cfg.data), cfg.test_fraction, cfg.seed)
    if cfg.invert:
        digits = replace(digits, train_images=1.0 - digits.train_images, test_images=1.0 - digits.test_images)
    h, w = digits.train_images.shape[1:]
    if h != w:
        raise DataError(f"{digits.source}: digits of {h}x{w}; the autoencoders need square images")
    if rt.is_main:
        ensure_writable_dir(out_dir)  # now, not when the first epoch's figures are due
    name, config = VARIANTS[cfg.variant], model_config(cfg, h)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank and every run with this seed
    model = build_model(name, **config)
    if rt.is_main:
        log(f"{name} ({count_parameters(model) / 1e6:.2f} M parameters) on {rt.device}: {digits.describe()}; "
            f"{schedule_text(cfg, 'digit')}")
    dataset = DigitDataset(digits.train_images, digits.train_labels, cfg.steps_per_epoch * cfg.batch_size,
                           cfg.seed, rt.rank)
    l1, kl = loss_weights(cfg)

    def after_epoch(epoch: int) -> None:
        if epoch == 0:
            draw_first_epoch(model, digits, cfg, out_dir, rt.device)

    result = fit(model, dataset, make_evaluate(digits, cfg, rt.device), cfg, rt,
                 kind="autoencoder", model_name=name, model_config=config,
                 loss_fn=lambda net, batch: autoencoder_loss(net, batch[0], l1, kl)["loss"], log=log,
                 after_epoch=after_epoch)
    if rt.is_main:
        result["metrics"] = final_report(cfg, digits, result, model, out_dir, rt.device, t0)
        result["summary"] = summary_line(result["metrics"], out_dir)
        log(result["summary"])
    return result


def main(argv=None) -> int:
    cfg = parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, argv, description=__doc__.split("\n\n")[0],
                       prog="python -m src.pretrain_autoencoder")
    return run_command(run, cfg, command="src.pretrain_autoencoder", argv=argv,
                       last_path=checkpoint_paths(cfg.models_dir, cfg.name or f"mnist_{cfg.variant}")[1])


if __name__ == "__main__":
    sys.exit(main())
