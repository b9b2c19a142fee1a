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
