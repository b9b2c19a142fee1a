"""`python -m src.download`'s work: fetch a competition's zip through the API, prepare it, and check
what is on disk (every page opened, the digit CSVs' headers and rows counted)."""
from __future__ import annotations

from pathlib import Path
import shutil

from src.common.errors import DataError
from src.data.competition import (CLEAN, COMPETITION, SAMPLE, TEST, TRAIN, count_csv_rows, load_pair,
                                  prepare_data, safe_extract)
from src.data.pages import load_page
from src.kaggle import api as kaggle_api
from src.kaggle.api import KaggleError

DIGITS = "digit-recognizer"


DATA_DIRS = {COMPETITION: Path("competition"), DIGITS: Path("competition") / DIGITS}


DIGIT_COLUMNS = {"train.csv": 785, "test.csv": 784}   # label + 28*28 pixels; the test set has no label


# what a zip leaves behind once prepared (or a synthetic set with its marker); stale once a new zip arrives
EXTRACTED = {COMPETITION: [TRAIN, CLEAN, TEST, *(f"{n}.zip" for n in (TRAIN, CLEAN, TEST, SAMPLE)), SAMPLE,
                           ".synthetic"],
             DIGITS: [*DIGIT_COLUMNS, "sample_submission.csv"]}


def manual_hint(competition: str, data_dir: Path) -> str:
    """How to do without the API: the data page, the folder, and the --check command for them."""
    cmd = "python -m src.download"
    if competition != COMPETITION:
        cmd += f" --competition {competition}"
    if data_dir != DATA_DIRS[competition]:
        cmd += f" --data-dir {data_dir}"
    return (f"or download the zip by hand from {kaggle_api.data_page(competition)} and drop it into "
            f"{data_dir}/, then run `{cmd} --check`")


def check(competition: str, data_dir: Path) -> str:
    """Prepare what is on disk and open every file; returns one line of counts. Raises DataError."""
    return check_documents(data_dir) if competition == COMPETITION else check_digits(data_dir)


def check_documents(data_dir: Path) -> str:
    data = prepare_data(data_dir)
    for noisy, clean in data.train_pairs:   # prepare_data only lists pages; a truncated PNG shows here
        load_pair(noisy, clean)
    for page in data.test_images:
        load_page(page)
    sample = "no sample submission" if data.sample_submission is None else \
        f"{count_csv_rows(data.sample_submission):,} sample rows"
    kind = "SYNTHETIC data" if data.synthetic else "data"
    return (f"{len(data.train_pairs)} training pairs, {len(data.test_images)} test pages, {sample} "
            f"({kind} in {data.root}; every page opens)")


def check_digits(data_dir: Path) -> str:
    """Extract digit-recognizer.zip if needed and count the rows of train.csv / test.csv."""
    data_dir = Path(data_dir)
    archive = data_dir / f"{DIGITS}.zip"
    if archive.is_file() and not all((data_dir / n).is_file() for n in DIGIT_COLUMNS):
        safe_extract(archive, data_dir)
    found = [n for n in DIGIT_COLUMNS if (data_dir / n).is_file()]
    if not found:
        raise DataError(f"{data_dir}: no train.csv or test.csv (nor {archive.name}); run "
                        f"`python -m src.download --competition {DIGITS}`, {manual_hint(DIGITS, data_dir)}")
    for name in found:
        _check_header(data_dir / name, DIGIT_COLUMNS[name])
    return ", ".join(f"{n}: {count_csv_rows(data_dir / n):,} rows" for n in found) + f" (in {data_dir})"


def _check_header(path: Path, columns: int) -> None:
    with open(path, "rb") as f:
        header = f.readline(1 << 16)
    if header.count(b",") + 1 != columns:
        raise DataError(f"{path}: header has {header.count(b',') + 1} columns, expected {columns} "
                        f"(label + 784 pixels in train.csv, 784 pixels in test.csv)")


def download(competition: str, data_dir: Path, force: bool = False, log=print) -> str:
    """Download the zip unless it is there, then prepare it; returns the summary. Raises KaggleError."""
    archive = data_dir / f"{competition}.zip"
    if archive.exists() and not force:
        log(f"{archive} is already there; not downloading it again (--force does)")
        return _prepare(competition, data_dir)
    hint = manual_hint(competition, data_dir)
    for warning in kaggle_api.permission_warnings():
        log(warning)
    creds = kaggle_api.find_credentials()
    if creds is None:   # say so before any network traffic
        raise KaggleError(kaggle_api.missing_credentials_message(hint))
    log(f"downloading {competition} from Kaggle into {data_dir}/ (credentials from {creds.source})")
    archive = kaggle_api.download_competition(competition, data_dir, creds, hint)
    log(f"{archive}: {archive.stat().st_size / 1e6:.1f} MB")
    _remove_stale(competition, data_dir, log)
    return _prepare(competition, data_dir)


def _prepare(competition: str, data_dir: Path) -> str:
    return prepare_data(data_dir).summary() if competition == COMPETITION else check_digits(data_dir)


def _remove_stale(competition: str, data_dir: Path, log) -> None:
    # prepare_data prefers extracted folders to the zip, so files from an older zip would hide the new one
    stale = [data_dir / n for n in EXTRACTED[competition] if (data_dir / n).exists()]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if stale:
        log(f"removed what the previous data left: {', '.join(p.name for p in stale)}")
