"""Matplotlib figures, written atomically (a crash never leaves half a PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI, servers and Kaggle kernels have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src.files import atomic_write  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110,
                                               bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict], path: Path, title: str = "denoiser") -> Path:
    """Train loss (MSE) and validation RMSE per epoch."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [r["epoch"] for r in history]
    ax[0].plot(ep, [r["train_loss"] for r in history], marker=".")
    ax[0].set(title=f"{title}: train loss (MSE)", xlabel="epoch", yscale="log")
    val = [(r["epoch"], r["score"]) for r in history if "score" in r]
    if val:
        ax[1].plot(*zip(*val), marker=".", color="C1")
    ax[1].set(title="validation RMSE (whole pages)", xlabel="epoch")
    for a in ax:
        a.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_before_after(noisy: np.ndarray, pred: np.ndarray, clean: np.ndarray | None, path: Path,
                      title: str = "") -> Path:
    """Noisy input, prediction and (when known) the clean target side by side."""
    panels = [("noisy", noisy), ("denoised", pred)] + ([("clean", clean)] if clean is not None else [])
    fig, ax = plt.subplots(1, len(panels),
                           figsize=(5 * len(panels), 5 * noisy.shape[0] / noisy.shape[1] + 0.6))
    for a, (name, img) in zip(np.atleast_1d(ax), panels):
        a.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        a.set_title(name)
        a.axis("off")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
