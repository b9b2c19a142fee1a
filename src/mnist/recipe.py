"""The MNIST autoencoder pretraining recipe: digits in batches, the shared training loop, and
the figures at the first and last epoch.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from src.common.config import check_config
from src.common.errors import DataError
from src.common.files import ensure_writable_dir
from src.common.runtime import setup_runtime
from src.mnist.config import VARIANTS, AutoencoderConfig
from src.mnist.digits import Digits, load_digits
from src.mnist.plots import (pca_grid, plot_accuracy_curves, plot_code_space, plot_digit_grid,
                             plot_loss_curves, plot_reconstructions)
from src.mnist.scores import code_sparsity, linear_probe, pixel_scores, run_model, summary_line, write_metrics
from src.models.autoencoders import autoencoder_loss
from src.models.checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint
from src.models.registry import build_model, count_parameters
from src.training.loop import fit, schedule_text


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


def published_path(cfg: AutoencoderConfig) -> Path:
    """The run's encoder for `train_denoiser --init-from`: its best checkpoint without the optimiser."""
    return Path(cfg.models_dir) / f"{cfg.name}.pt"


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
                 after_epoch=after_epoch, also=[published_path(cfg)])
    if rt.is_main:
        result["metrics"] = final_report(cfg, digits, result, model, out_dir, rt.device, t0)
        result["summary"] = summary_line(result["metrics"], out_dir)
        log(result["summary"])
    return result


def final_report(cfg: AutoencoderConfig, digits: Digits, result: dict, last_model, out_dir: Path,
                 device, t0: float) -> dict:
    """Score the best checkpoint on every test digit, draw the figures, write metrics.json/.md."""
    ckpt = load_checkpoint(result["best_path"], "autoencoder")
    published = published_path(cfg)
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
