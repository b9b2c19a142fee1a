"""Upload a submission to Kaggle, once it passes the checks Kaggle makes.

    python -m src.submit submissions/submission.csv -m "full recipe, batch 4"

The file is validated first (header, ids against the competition's sample submission, values in
[0, 1]): a file Kaggle would reject is refused here, before a 100 MB upload and one of the day's
submissions. Needs the credentials src.download uses. The competition has closed, so Kaggle scores
the file as a late submission; the score shows on the competition's submissions page.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src import kaggle_api
from src.data import COMPETITION, DEFAULT_DATA_DIR, DataError, competition_sample
from src.files import interrupt_code, sigterm_as_interrupt
from src.kaggle_api import KaggleError
from src.submission import compression_of, reference_problems, sample_problem, validate_submission
from src.synthetic import MARKER

PAGE = f"https://www.kaggle.com/c/{COMPETITION}"


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


def find_sample(data_dir: Path, sample: Path | None) -> Path | None:
    """The competition's sample submission: `sample`, else the one in data_dir, else None.

    Raises DataError for a named sample that is not there, or one of the synthetic demo data (its
    ids are not the competition's: a file that matches them is one Kaggle rejects).
    """
    if sample is None:
        sample = competition_sample(data_dir)
    if sample is None:
        return None
    problem = sample_problem(sample)   # the command refuses it sooner; a caller from Python meets it here
    if problem:
        raise DataError(f"{sample}: {problem}")
    if (sample.parent / MARKER).exists():
        raise DataError(f"{sample} is the SYNTHETIC demo's sample submission, not the competition's: "
                        f"get the data with `python -m src.download`, then make the submission again")
    return sample


def submit(file: Path, message: str, data_dir: Path, sample: Path | None, log=print) -> str:
    """Validate file, then upload it; returns Kaggle's answer. Raises DataError or KaggleError."""
    if not file.is_file():
        why = "is a folder, not a submission file" if file.is_dir() else "no such file"
        raise DataError(f"{file}: {why}")
    sample = find_sample(data_dir, sample)
    if sample is None:   # the format alone would let through a file whose ids Kaggle rejects
        raise DataError(f"{file}: not uploaded: no sample submission in {data_dir}/ to check its ids "
                        f"against. Get the data with `python -m src.download` (or drop the competition zip "
                        f"into {DEFAULT_DATA_DIR}/ and run `python -m src.download --check`), or pass "
                        f"--data-dir or --sample")
    log(f"checking ids against {sample}")
    report = validate_submission(file, sample=sample)
    log(report.text(file))
    if not report.ok:
        raise DataError(f"{file}: not uploaded; Kaggle would reject it (problems above)")
    hint = f"or upload {file} by hand on {PAGE}/submit"
    for warning in kaggle_api.permission_warnings():
        print(warning, file=sys.stderr)
    creds = kaggle_api.find_credentials()
    if creds is None:   # say so before any network traffic
        raise KaggleError(kaggle_api.missing_credentials_message(hint))
    log(f"uploading {file} ({file.stat().st_size / 1e6:.1f} MB) to {COMPETITION} "
        f"(credentials from {creds.source})")
    if compression_of(file) is None:   # the test set's CSV: 257.5 MB plain, 59.5 MB zipped (README)
        log("  a plain CSV: `make_submission --compress zip` writes one about 4x smaller, quicker to upload")
    answer = kaggle_api.submit_file(COMPETITION, file, message, creds, hint)
    log(f"submitted{f': {answer}' if answer else ''}. The score shows on {PAGE}/submissions")
    return answer


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            submit(args.file, args.message, args.data_dir, args.sample)
    except (DataError, KaggleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\ninterrupted; the submission may or may not have reached Kaggle: look on "
              f"{PAGE}/submissions before sending it again", file=sys.stderr)
        return interrupt_code(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
