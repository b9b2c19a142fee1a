"""`python -m src.submit`'s work: check a submission against the competition's sample as Kaggle would,
then upload it through the API."""
from __future__ import annotations

from pathlib import Path

from src.common.errors import DataError
from src.data.competition import COMPETITION, DEFAULT_DATA_DIR, competition_sample
from src.data.synthetic import MARKER
from src.kaggle import api as kaggle_api
from src.kaggle.api import KaggleError
from src.submission.reader import compression_of, sample_problem, validate_submission

PAGE = f"https://www.kaggle.com/c/{COMPETITION}"


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
        log(warning)
    creds = kaggle_api.find_credentials()
    if creds is None:   # say so before any network traffic
        raise KaggleError(kaggle_api.missing_credentials_message(hint))
    log(f"uploading {file} ({file.stat().st_size / 1e6:.1f} MB) to {COMPETITION} "
        f"(credentials from {creds.source})")
    if compression_of(file) is None:   # the test set's CSV: 257.5 MB plain, 59.5 MB zipped (docs/speed.md)
        log("  a plain CSV: `make_submission --compress zip` writes one about 4x smaller, quicker to upload")
    answer = kaggle_api.submit_file(COMPETITION, file, message, creds, hint)
    log(f"submitted{f': {answer}' if answer else ''}. The score shows on {PAGE}/submissions")
    return answer
