"""Check a submission file before uploading it, and score it when the clean pages are at hand.

    python -m src.validate_submission submissions/submission.csv.zip
    python -m src.validate_submission preds.csv --truth competition/val_cleaned

Exit code 0 when the file is valid, 1 otherwise, 2 for a --data-dir, --sample or --truth that is
not there.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from src.common.errors import DataError
from src.common.runner import run_command
from src.data.competition import DEFAULT_DATA_DIR, SAMPLE, SYNTHETIC_DIR, competition_sample
from src.data.synthetic import MARKER
from src.submission.reader import reference_problems, validate_submission

GET_DATA = "Get the competition data with `python -m src.download`"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.validate_submission", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("file", type=Path, help="submission: .csv, .csv.zip or .csv.gz")
    reference = p.add_mutually_exclusive_group()   # the sample named, or the one in a data folder
    reference.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                           help="folder of the competition data, whose sample submission the ids must "
                                "match (default: %(default)s)")
    reference.add_argument("--sample", type=Path, default=None,
                           help=f"sample submission whose ids must match (default: the one in --data-dir; "
                                f"with no data there, {SYNTHETIC_DIR / SAMPLE}, what `make demo` predicts)")
    p.add_argument("--truth", type=Path, default=None,
                   help="folder of clean pages <image>.png: ids must cover them; prints the RMSE")
    args = p.parse_args(argv)
    # a missing reference is the command's fault, not the submission's: say so before reading it
    problems = reference_problems(args.data_dir, args.sample)
    if (not problems and args.data_dir != DEFAULT_DATA_DIR and args.sample is None and args.truth is None
            and competition_sample(args.data_dir) is None):   # a folder named for its sample
        problems.append(f"--data-dir {args.data_dir}: no sample submission ({SAMPLE}) there to check the ids "
                        f"against; name the folder that holds it, or pass --sample")
    if problems:
        p.error("\n  ".join(problems))
    if args.truth is not None and not args.truth.is_dir():
        p.error(f"--truth {args.truth}: "
                f"{'is a file, not a folder of pages' if args.truth.exists() else 'no such folder'}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command(lambda: check(args))


def check(args: argparse.Namespace) -> int:
    """Check the file as parsed by parse_args; prints the report and returns the exit code."""
    if not args.file.is_file():
        what = "is a folder, not a submission file" if args.file.is_dir() else "no such file"
        raise DataError(f"{args.file}: {what}")
    sample, demo, matched = args.sample, None, True
    # with --truth the clean pages define the ids (validation pages are not the test pages)
    if sample is None and args.truth is None:
        sample = competition_sample(args.data_dir)
        if sample is None and args.data_dir == DEFAULT_DATA_DIR and (SYNTHETIC_DIR / SAMPLE).is_file():
            sample = demo = SYNTHETIC_DIR / SAMPLE   # what `make demo` predicted, for want of the data
    if sample is not None:
        print(f"checking ids against {sample}")
    elif args.truth is not None:
        print(f"checking ids against the pages in {args.truth}")
    else:
        print(f"no sample submission in {args.data_dir}/ (pass --data-dir or --sample): checking the format "
              f"only")
    report = validate_submission(args.file, sample=sample, truth=args.truth)
    if demo is not None and report.ids_differ:
        # the ids of a demo picked for want of the competition's sample say nothing: judge the format
        print(f"the ids are not those of {demo}, the SYNTHETIC demo's: checking the format only")
        report, matched = validate_submission(args.file), False
    note = synthetic_note(sample, report.ok, matched)
    print(report.text(args.file, "a valid submission for the SYNTHETIC demo pages only" if note else
                      "a valid submission"))
    if note:
        print(note)
    return 0 if report.ok else 1


def synthetic_note(sample: Path | None, ok: bool, matched: bool = True) -> str | None:
    """The warning due when the ids were checked against the synthetic demo sample, not Kaggle's
    (matched: False when they were not those of the demo sample, picked for want of Kaggle's)."""
    if sample is None or not (sample.parent / MARKER).exists():
        return None
    if not matched:
        return (f"NOTE: the ids were not checked: there is no competition sample submission in "
                f"{DEFAULT_DATA_DIR}/. {GET_DATA}, or pass --data-dir or --sample, to check them for Kaggle.")
    if ok:
        return (f"NOTE: {sample} is the SYNTHETIC demo sample: the file matches the synthetic demo pages, "
                f"not the competition's test pages, so Kaggle would reject it. {GET_DATA}, then make "
                f"the submission again.")
    return None


if __name__ == "__main__":
    sys.exit(main())
