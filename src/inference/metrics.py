"""Image-quality metrics in NumPy float64, the competition's RMSE first."""
from __future__ import annotations

import numpy as np


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs target {target.shape}")
    if pred.size == 0:
        raise ValueError("empty arrays have no RMSE")
    return pred, target


def squared_error_sum(pred, target) -> tuple[float, int]:
    """Sum of squared differences and pixel count, for pooling RMSE over pages.

    Args: pred, target: arrays of equal shape, values in [0, 1].
    Returns: (sum of squared errors, number of pixels).
    """
    pred, target = _pair(pred, target)
    return float(np.sum((pred - target) ** 2)), int(pred.size)


def rmse(pred, target) -> float:
    """Root mean squared error, as the competition computes it.

    Args: pred, target: arrays of equal shape, intensities in [0, 1] (pixels / 255).
    Returns: sqrt(mean((pred - target)^2)) in [0, 1].
    """
    sse, n = squared_error_sum(pred, target)
    return float(np.sqrt(sse / n))


def pooled_rmse(pairs) -> float:
    """RMSE over all pixels of several pages, as the leaderboard pools them (not a mean of per-page RMSEs).

    Args: pairs: iterable of (pred, target) arrays.
    """
    sse, n = 0.0, 0
    for pred, target in pairs:
        s, k = squared_error_sum(pred, target)
        sse, n = sse + s, n + k
    if n == 0:
        raise ValueError("no pages to score")
    return float(np.sqrt(sse / n))


def psnr_from_rmse(err: float) -> float:
    """Peak signal-to-noise ratio in dB for data range 1, from an RMSE."""
    return float("inf") if err == 0 else float(-20.0 * np.log10(err))


def psnr(pred, target) -> float:
    return psnr_from_rmse(rmse(pred, target))


# Pixel classes of a clean page, by its value: where a denoiser's remaining error sits (docs/recipe.md).
PIXEL_CLASSES = ("ink", "ink edge", "light edge", "white near ink", "white")


def pixel_classes(target, near: int = 2) -> np.ndarray:
    """Class index (into PIXEL_CLASSES) of each pixel of a clean page in [0, 1].

    ink < 0.1 <= ink edge < 0.5 <= light edge < 0.95 <= white; white pixels within `near` pixels
    (a (2 near + 1)-square) of a pixel < 0.5 are "white near ink", where antialiasing halos live.
    """
    y = np.asarray(target, dtype=np.float64)
    dark = y < 0.5
    padded = np.pad(dark, near)
    h, w = y.shape
    close = np.zeros_like(dark)
    for dy in range(2 * near + 1):
        for dx in range(2 * near + 1):
            close |= padded[dy:dy + h, dx:dx + w]
    return np.select([y < 0.1, y < 0.5, y < 0.95, close], [0, 1, 2, 3], default=4)


def error_breakdown(pairs, near: int = 2) -> dict[str, tuple[float, float, float]]:
    """{class: (share of pixels, share of the squared error, RMSE within the class)} over pages.

    Args: pairs: iterable of (pred, clean target) arrays; pred as scored (already clipped).
    """
    k = len(PIXEL_CLASSES)
    counts, sse = np.zeros(k), np.zeros(k)
    for pred, target in pairs:
        pred, target = _pair(pred, target)
        cls = pixel_classes(target, near).ravel()
        counts += np.bincount(cls, minlength=k)
        sse += np.bincount(cls, weights=((pred - target) ** 2).ravel(), minlength=k)
    if counts.sum() == 0:
        raise ValueError("no pages to score")
    total = sse.sum() or 1.0
    return {name: (float(counts[i] / counts.sum()), float(sse[i] / total),
                   float(np.sqrt(sse[i] / counts[i])) if counts[i] else 0.0)
            for i, name in enumerate(PIXEL_CLASSES)}
