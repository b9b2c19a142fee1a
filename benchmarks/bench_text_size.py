"""`text_size` (src/inference/scale.py, what `python -m src.denoise` scales pages by) on faded pages.

    python benchmarks/bench_text_size.py [--data-dir competition] [--scales 1 3]

The competition's training pages (noisy and clean) squeezed into grey levels 150-250 and 180-250 (a
faded scan), at each scale (enlarged cubic after the squeeze): their measured text size over the same
page's at full contrast and scale. Prints per set the median ratio, how many pages measure within 10 %
of their full-contrast size, and how many read no text at all.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.inference.scale import text_size  # noqa: E402


def enlarged(page: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return page
    return np.clip(cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), 0, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT / "competition")
    p.add_argument("--scales", type=float, nargs="+", default=[1, 3])
    args = p.parse_args()
    pairs = load_pairs(prepare_data(args.data_dir).train_pairs)
    for kind, pages in (("noisy", [n for n, _ in pairs]), ("clean", [c for _, c in pairs])):
        for factor in args.scales:
            full = [text_size(enlarged(page, factor)) for page in pages]
            for low in (150, 180):
                faded = [(low + (250 - low) * np.float32(page)) / 255 for page in pages]
                ratios = np.array([(text_size(enlarged(page, factor)) or 0) / size
                                   for page, size in zip(faded, full) if size])
                close = (abs(ratios - 1) <= 0.1).sum()
                print(f"{kind} pages squeezed into {low}-250, {factor:g}x: median {np.median(ratios):.2f} of "
                      f"their full-contrast size, within 10 % {close}/{len(ratios)}, "
                      f"no text {(ratios == 0).sum()}", flush=True)


if __name__ == "__main__":
    main()
