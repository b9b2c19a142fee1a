"""Matplotlib figures, written atomically (a crash never leaves half a PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI, servers and Kaggle kernels have no display
import matplotlib.pyplot as plt  # noqa: E402

from src.common.files import atomic_write  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110,
                                               bbox_inches="tight"))
    plt.close(fig)
    return path
