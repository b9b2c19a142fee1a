"""Figures of the MNIST autoencoders: curves, reconstructions, code space, generated digits.

Every function takes NumPy arrays, writes one PNG atomically (`src.common.plots.save_figure`) and returns
its path. Images are (N, H, W) in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.common.plots import plt, save_figure


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [(r["epoch"], r[key]) for r in history if key in r]
    return ([e for e, _ in rows], [v for _, v in rows])


def plot_loss_curves(history: list[dict], path: Path, title: str = "autoencoder") -> Path:
    """Left: the training objective (train: mean over the epoch's batches; test: eval mode).
    Right: reconstruction MSE per pixel on the fixed train subset and on the test digits."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train_loss", "train (during the epoch)"), ("test_loss", "test")):
        ax[0].plot(*_series(history, key), marker=".", label=label)
    for key, label in (("train_mse", "train subset"), ("test_mse", "test")):
        ax[1].plot(*_series(history, key), marker=".", label=label)
    ax[0].set(title=f"{title}: training objective", xlabel="epoch", yscale="log")
    ax[1].set(title="reconstruction MSE", xlabel="epoch", yscale="log")
    for a in ax:
        a.grid(alpha=0.3, which="both")
        a.legend()
    return save_figure(fig, path)


def plot_accuracy_curves(history: list[dict], path: Path, title: str = "autoencoder") -> Path:
    """Pixel accuracy (reconstruction on the same side of 0.5 as the input) per epoch."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, label in (("train_acc", "train subset"), ("test_acc", "test")):
        ax.plot(*_series(history, key), marker=".", label=label)
    ax.set(title=f"{title}: pixel accuracy", xlabel="epoch", ylabel="share of pixels")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_reconstructions(images: np.ndarray, recons: np.ndarray, path: Path, title: str = "",
                         per_row: int = 10) -> Path:
    """Inputs and their reconstructions in alternating rows, `per_row` digits per row."""
    n = len(images)
    rows = -(-n // per_row)
    fig, ax = plt.subplots(2 * rows, per_row, figsize=(per_row * 0.9, 2 * rows * 0.95 + 0.5), squeeze=False)
    for a in ax.flat:
        a.axis("off")
    for i in range(n):
        r, c = divmod(i, per_row)
        ax[2 * r, c].imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax[2 * r + 1, c].imshow(recons[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for r in range(rows):
        ax[2 * r, 0].set_title("input", fontsize=8, loc="left")
        ax[2 * r + 1, 0].set_title("reconstruction", fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def pca_axes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) codes -> (mean (D,), first two principal axes (2, D), explained variance ratio (2,)).

    Each axis points where its largest entry is positive (SVD signs are arbitrary), so the code-space
    scatter and the decoded manifold of the same codes face the same way. A one-unit code has one
    axis; the second row (and its ratio) is then zero.
    """
    codes = np.asarray(codes, dtype=np.float64)
    mean = codes.mean(axis=0)
    _, s, vt = np.linalg.svd(codes - mean, full_matrices=False)
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]
    var = s ** 2
    axes = np.zeros((2, codes.shape[1]))
    axes[:len(vt[:2])] = vt[:2]
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:len(var[:2])] = var[:2] / var.sum()
    return mean, axes, ratio


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> (projection on the first two principal axes (N, 2), explained variance ratio (2,))."""
    mean, axes, ratio = pca_axes(codes)
    return (np.asarray(codes, dtype=np.float64) - mean) @ axes.T, ratio


def pca_grid(codes: np.ndarray, n: int = 15, quantile: float = 0.05) -> np.ndarray:
    """Codes on an n x n grid across the plane of the first two principal axes, (n * n, D).

    The grid spans the `quantile`..`1 - quantile` range of the codes' projections on each axis and
    sits at their mean along every other direction. Row-major, as `plot_digit_grid` lays it out:
    PC1 grows left to right, PC2 grows bottom to top. Decoded, it shows the learnt 2-D manifold.
    """
    mean, axes, _ = pca_axes(codes)
    proj = (np.asarray(codes, dtype=np.float64) - mean) @ axes.T
    lo, hi = np.quantile(proj, [quantile, 1 - quantile], axis=0)
    pc1, pc2 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(hi[1], lo[1], n))
    return mean + np.stack([pc1.ravel(), pc2.ravel()], axis=1) @ axes


def plot_code_space(codes: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Scatter of the codes coloured by digit: the first two code units, and the 2-D PCA projection."""
    codes = np.asarray(codes, dtype=np.float64)
    first = codes[:, :2] if codes.shape[1] >= 2 else np.pad(codes, ((0, 0), (0, 1)))
    proj, ratio = pca_2d(codes)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = [(first, "code units 0 and 1", "code[0]", "code[1]"),
              (proj, f"PCA of the {codes.shape[1]}-unit code ({ratio.sum():.0%} of the variance)",
               f"PC1 ({ratio[0]:.0%})", f"PC2 ({ratio[1]:.0%})")]
    for a, (xy, name, xl, yl) in zip(ax, panels):
        for d in range(10):
            sel = labels == d
            a.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, color=plt.cm.tab10(d), label=str(d),
                      rasterized=True)
        a.set(title=name, xlabel=xl, ylabel=yl)
        a.grid(alpha=0.3)
    ax[1].legend(title="digit", markerscale=3, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_digit_grid(images: np.ndarray, path: Path, title: str = "", cols: int = 8) -> Path:
    """A grid of digits (e.g. samples from a VAE) as one image."""
    n, h, w = images.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + 2), cols * (w + 2)), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = img
    fig, ax = plt.subplots(figsize=(cols * 0.75, rows * 0.75 + 0.4))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
