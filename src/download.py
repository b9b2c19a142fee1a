"""Download the competition data from Kaggle, or check what is already on disk.

    python -m src.download                                  # competition/denoising-dirty-documents.zip
    python -m src.download --check                          # no network: prepare and verify what is there
    python -m src.download --competition digit-recognizer   # MNIST as CSV, for autoencoder pretraining

Needs Kaggle credentials (KAGGLE_API_TOKEN or ~/.kaggle/kaggle.json) and accepted competition rules;
without them, drop the zip from the competition's data page into the data folder and run --check.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from src.common.runner import run_command
from src.data.competition import COMPETITION
from src.kaggle.api import KaggleError
from src.kaggle.download import DATA_DIRS, check, download


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.download", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("--competition", default=COMPETITION, choices=sorted(DATA_DIRS))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the zip goes (default: competition/, or competition/digit-recognizer/)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="no network: prepare and verify what is on disk")
    mode.add_argument("--force", action="store_true", help="download again even if the zip is there")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = args.data_dir if args.data_dir is not None else DATA_DIRS[args.competition]
    return run_command(lambda: print(check(args.competition, data_dir) if args.check else
                                     download(args.competition, data_dir, force=args.force)),
                       errors=(KaggleError,),
                       interrupted=lambda what: f"{what}; run the same command again to resume the download")


if __name__ == "__main__":
    sys.exit(main())
