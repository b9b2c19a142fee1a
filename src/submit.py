"""Upload a submission to Kaggle, once it passes the checks Kaggle makes.

    python -m src.submit submissions/submission.csv -m "full recipe, batch 4"

The file is validated first (header, ids against the competition's sample submission, values in
[0, 1]): a file Kaggle would reject is refused here, before a 100 MB upload and one of the day's
submissions. Needs the credentials src.download uses. The competition has closed, so Kaggle scores
the file as a late submission; the score shows on the competition's submissions page.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from src.common.runner import run_command
from src.data.competition import DEFAULT_DATA_DIR
from src.kaggle.api import KaggleError
from src.kaggle.submit import PAGE, submit
from src.submission.reader import reference_problems


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.submit", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("file", type=Path, help="submission: .csv, .csv.zip or .csv.gz")
    p.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="folder of the competition data, with its sample submission (default: %(default)s)")
    p.add_argument("--sample", type=Path,
                   help="sample submission whose ids must match (default: the one in --data-dir)")
    args = p.parse_args(argv)
    problems = reference_problems(args.data_dir, args.sample)
    if problems:
        p.error("\n  ".join(problems))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command(lambda: submit(args.file, args.message, args.data_dir, args.sample),
                       errors=(KaggleError,),
                       interrupted=lambda what: f"{what}; the submission may or may not have reached Kaggle: "
                                                f"look on {PAGE}/submissions before sending it again")


if __name__ == "__main__":
    sys.exit(main())
