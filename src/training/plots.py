"""The denoiser's figures: training curves and one held-out page before and after."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.common.plots import plt, save_figure


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
