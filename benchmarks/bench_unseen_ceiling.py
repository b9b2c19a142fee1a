"""The unseen-noise benchmark's faults, seen: how far a model of this size and time gets on them.

    python benchmarks/bench_unseen_ceiling.py [--preset general] [--data-dir DIR]
        [--competition models/quick_best.pt] [--no-ocr] [-- extra train_denoiser flags]

Trains the preset (`general` by default) with bench_unseen_noise.py's fourteen families as its
degraded pages, in place of Augraphy's training pipeline: the same pipelines and faults, drawn on the
training split's clean pages and rendered pages of the training stream, so never on a held-out page or
with a held-out seed. Then scores that model with bench_unseen_noise.py. What it scores there is what
the recipe reaches when the benchmark's noise is not unseen at all, which separates what the general
recipe misses for want of the right examples from what the model's size and training time leave.
The degraded pages are kept in .cache/degraded-bench-families, apart from the training pipeline's.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import bench_unseen_noise as unseen  # noqa: E402
from bench_denoiser import add_training_args, data_dir_of  # noqa: E402

from src.common.config import parse_config  # noqa: E402
from src.data.degraded import as_uint8  # noqa: E402
from src.training.config import DENOISER_PRESETS, DenoiserConfig  # noqa: E402
from src.training.denoiser import run  # noqa: E402
from src.training.loop import checkpoint_paths, run_training  # noqa: E402


def bench_families_degrade(ag):
    """degrade(clean uint8, rng) -> uint8: one of the benchmark's families, drawn evenly, as a 8-bit scan."""
    families = list(unseen.all_families(ag).values())

    def degrade(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        family, augraphy = families[int(rng.integers(len(families)))]
        return as_uint8(unseen.degrade(family, augraphy, clean, rng))
    return degrade


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p)
    p.set_defaults(preset="general")
    p.add_argument("--competition", type=Path, default=Path("models/quick_best.pt"))
    p.add_argument("--no-ocr", action="store_true", help="RMSE only: no Tesseract needed")
    args = p.parse_args()
    data_dir = data_dir_of(p, args)
    if not args.competition.is_file():   # before the training, not after it
        p.error(f"{args.competition}: no such checkpoint (train it: python -m src.train_denoiser "
                f"--preset quick --name quick), or pass --competition")
    if not args.no_ocr:
        unseen.ocr_reader()   # one line saying what to install, before the training
    models = ROOT / ".cache" / "bench_ceiling"
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS,
                       ["--preset", args.preset, "--data-dir", str(data_dir), "--models-dir", str(models),
                        "--degraded-dir", str(ROOT / ".cache" / "degraded-bench-families"),
                        *[a for a in args.rest if a != "--"]])
    if Path(cfg.degraded_dir).resolve() == Path(DenoiserConfig.degraded_dir).resolve():
        # the cache's key names the pages and seeds, not the faults: these would be taken for the others
        p.error(f"--degraded-dir {cfg.degraded_dir} holds the training pipeline's pages: give another folder")
    degrade = bench_families_degrade(unseen.augraphy_or_fail())
    argv = [*sys.argv[1:], *([] if "--" in sys.argv[1:] else ["--"])]   # --resume must follow the --
    rc = run_training(lambda c: run(c, degrade=degrade), cfg, command="benchmarks.bench_unseen_ceiling",
                      argv=argv, kind="denoiser", last_path=checkpoint_paths(cfg.models_dir, cfg.name)[1])
    if rc:
        sys.exit(rc)
    best = checkpoint_paths(cfg.models_dir, cfg.name)[0]
    unseen.main(["--competition", str(args.competition), "--general", str(best), "--data-dir", str(data_dir),
                 *(["--no-ocr"] if args.no_ocr else [])])


if __name__ == "__main__":
    main()
