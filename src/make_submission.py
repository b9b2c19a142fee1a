"""Write the competition CSV: python -m src.make_submission --checkpoint models/denoiser_best.pt

Pages come from --images (any folder of PNGs) or the test pages found in --data-dir; several
--checkpoint flags average a fold ensemble; flip test-time augmentation is on unless --no-tta, and so
are 3 copies of each page moved by a few pixels unless --shifts 0.
Test pages that show the same text (the competition's are 18 texts of 4 pages each) take the weighted
interquartile mean of their predictions (of each flip and shift of each page by each checkpoint) unless
--no-consensus; pages of --images too when all have the competition's sizes, or with --consensus.
--png-dir also keeps each cleaned page as a PNG, to look at (or to clean scans of your own).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from src.common.runner import run_command
from src.data.competition import DEFAULT_DATA_DIR
from src.inference.tiles import SHIFTS
from src.submission.predict import PredictConfig, check_config, run
from src.submission.reader import SubmissionError


def parse_args(argv=None) -> PredictConfig:
    p = argparse.ArgumentParser(prog="python -m src.make_submission", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="denoiser checkpoint file; repeat to average several (fold ensemble)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"folder holding the competition zip or its folders (default: {DEFAULT_DATA_DIR})")
    p.add_argument("--images", type=Path, help="folder of PNG pages to predict instead of the test pages")
    p.add_argument("--sample", type=Path,
                   help="sample submission to check ids against (default: the one in --data-dir)")
    p.add_argument("--out", default="submissions/submission.csv",   # a str until checked: Path drops a "/"
                   help="file to write; a name ending .zip or .gz is compressed (default: %(default)s)")
    p.add_argument("--compress", choices=["zip", "gz"],
                   help="compress the CSV; .zip or .gz is appended to --out unless it ends so already")
    p.add_argument("--png-dir", type=Path,
                   help="also write each cleaned page as <png-dir>/<page>.png (8-bit grayscale)")
    p.add_argument("--tile", type=int, default=PredictConfig.tile,
                   help="side in pixels of the tiles a page is predicted in (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=PredictConfig.overlap,
                   help="pixels neighbouring tiles share, 0 to below --tile (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=PredictConfig.tta,
                   help="average predictions over the 4 flips (4x the time, lower RMSE: docs/recipe.md; "
                        "default: on)")
    p.add_argument("--shifts", type=int, default=len(SHIFTS), choices=range(len(SHIFTS) + 1), metavar="N",
                   help=f"also predict each page moved by a few pixels, 0 to {len(SHIFTS)} times, and "
                        f"average (one more pass each: {len(SHIFTS)} shifts take 3.4x the time of 0 for "
                        f"about 3 %% lower RMSE with consensus, docs/speed.md; default: %(default)s)")
    p.add_argument("--consensus", action=argparse.BooleanOptionalAction,
                   help="pages of the same text take the weighted interquartile mean of their "
                        "predictions (lower RMSE: docs/consensus.md; holds every prediction in memory, "
                        "about 0.5 MB a page and view (4 views with --tta, per checkpoint and shift); "
                        "default: on for the test pages, and for --images when every page has a size of "
                        "the competition's; off for other images, where copies of one form filled in by "
                        "hand would lose the handwriting)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision: fp16 on CUDA; on a CPU with AMX the network in bf16 with its last "
                        "layer in fp32 (2.5x as fast, RMSE +0.1 %%: docs/inference_speed.md); --no-amp: "
                        "fp32 everywhere (default: on)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads; 0: OMP_NUM_THREADS if set, else every core (default: %(default)s)")
    cfg = PredictConfig(**vars(p.parse_args(argv)))
    problems = check_config(cfg)
    if problems:   # all of them at once, as parse_config reports the training flags
        p.error("\n  ".join(problems))
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)

    def interrupted(what: str) -> str:   # write_submission has removed its temporary file
        kept = f" ({cfg.out} is left as it was)" if cfg.out.exists() else ""
        return f"{what}; no submission written{kept}"

    return run_command(lambda: run(cfg), errors=(SubmissionError, RuntimeError), interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
