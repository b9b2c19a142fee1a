"""Train the document denoiser: python -m src.train_denoiser [--preset quick|full|general|...] [--flag v ...]

Leaves models/denoiser_best.pt and denoiser_last.pt (the general presets: general_*, general_long_*, scans_*;
--name sets it), a curve plot and a before/after picture.
Run under `torchrun --nproc_per_node=N` for data-parallel training.
"""
from __future__ import annotations

import sys

from src.common.config import parse_config
from src.training.config import DENOISER_PRESETS, DenoiserConfig
from src.training.denoiser import run
from src.training.loop import checkpoint_paths, run_training


def main(argv=None) -> int:
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS, argv, description=__doc__,
                       prog="python -m src.train_denoiser")
    return run_training(run, cfg, command="src.train_denoiser", argv=argv, kind="denoiser",
                        last_path=checkpoint_paths(cfg.models_dir, cfg.name)[1])


if __name__ == "__main__":
    sys.exit(main())
