"""What the denoisers do to ink wider than their strokes: dark bars of growing width on grey paper.

    python benchmarks/bench_solid_ink.py --checkpoint models/quick_best.pt [--checkpoint B ...]

A page of vertical bars 2-48 px wide (grey 0.12 on paper 0.9), cleaned as it is (`predict_page`, no TTA):
per model, the cleaned value down the middle of each bar. The denoisers learnt strokes a few px wide and
clear the inside of wider ones as if it were a stain; `denoise` keeps those that are type (docs/denoise.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from src.inference.tiles import predict_page  # noqa: E402
from src.models.checkpoints import load_model  # noqa: E402

WIDTHS = (2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, action="append", required=True)
    args = p.parse_args()
    page = np.full((420, 1000), 0.9, np.float32)
    left = [20]
    for width in WIDTHS:
        page[60:360, left[-1]:left[-1] + width] = 0.12
        left.append(left[-1] + width + 30)
    print("bar width, px:", " ".join(f"{w:5d}" for w in WIDTHS))
    for path in args.checkpoint:
        out = predict_page(load_model(path, "denoiser")[0].eval(), page, tta=False)
        print(f"{path}:", " ".join(f"{out[100:320, x + w // 2].mean():5.2f}" for w, x in zip(WIDTHS, left)))


if __name__ == "__main__":
    main()
