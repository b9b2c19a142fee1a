"""Find, prepare and load the competition data.

The data may arrive as the outer zip Kaggle's CLI downloads (zips inside a zip), as the four inner
zips, or as extracted folders (a Kaggle kernel mount). `prepare_data` accepts all three, extracts
what is missing once (atomically, refusing members that would escape the target) and returns the
checked page lists.
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
import logging
import os
from pathlib import Path
import shutil
import tempfile
import zipfile
import zlib

import numpy as np

from src.common.errors import DataError
from src.common.files import is_stale
from src.data.pages import list_images, load_page, page_sort_key

log = logging.getLogger(__name__)

COMPETITION = "denoising-dirty-documents"
DEFAULT_DATA_DIR = Path("competition")
SYNTHETIC_DIR = DEFAULT_DATA_DIR / "synthetic"   # the embedded default, generated on first use
TRAIN, CLEAN, TEST = "train", "train_cleaned", "test"
SAMPLE = "sampleSubmission.csv"
# what reading a zip raises beyond OSError: corrupt or truncated (the first three), a compression Python
# lacks (NotImplementedError: Deflate64, which Windows writes for large files), encrypted (RuntimeError)
ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError)
PAGE_SIZES = {(258, 540), (420, 540)}   # (height, width) of every page of the competition, train and test


@dataclass(frozen=True)
class CompetitionData:
    root: Path                           # folder holding train/, train_cleaned/, test/
    train_pairs: list[tuple[Path, Path]]  # (noisy, clean), sorted by page id
    test_images: list[Path]
    sample_submission: Path | None
    synthetic: bool = False

    def summary(self) -> str:
        kind = "SYNTHETIC (embedded default, not the competition)" if self.synthetic else "competition"
        sample = ("none" if self.sample_submission is None
                  else f"{count_csv_rows(self.sample_submission):,} rows")
        return (f"{kind} data in {self.root}: {len(self.train_pairs)} training pairs, "
                f"{len(self.test_images)} test pages, sample submission: {sample}")


def kaggle_data_dirs(kaggle_root: Path = Path("/kaggle")) -> list[Path]:
    """Where a Kaggle kernel mounts this competition (the layout has changed over the years)."""
    inputs = kaggle_root / "input"
    return [inputs / COMPETITION, inputs / "competitions" / COMPETITION]


# ---------------------------------------------------------------- archives

def safe_extract(archive: Path, dest: Path, expect: tuple[str, ...] = ()) -> None:
    """Extract a zip into dest atomically; a member that would land outside dest is refused.

    Extraction happens in a temporary sibling folder whose contents are moved into dest only when the
    whole archive extracted, so an interrupted run leaves no half-extracted folder behind. expect: files
    or folders of which the zip must hold one at its top, checked before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        _remove_stale_extractions(dest)
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if expect:
                _check_top(archive, [m.filename for m in members], expect)
            root = dest.resolve()
            for m in members:
                target = (root / m.filename).resolve()
                if m.filename.startswith(("/", "\\")) or (target != root and root not in target.parents):
                    raise DataError(f"{archive}: member {m.filename!r} would be written outside "
                                    f"{dest}; refused")
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                for m in members:
                    zf.extract(m, tmp)
                for item in tmp.iterdir():
                    final = dest / item.name
                    if final.exists():
                        shutil.rmtree(final) if final.is_dir() else final.unlink()
                    os.replace(item, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except ZIP_ERRORS as e:
        what = "corrupt or truncated zip" if isinstance(e, ZIP_ERRORS[:3]) else "a zip Python cannot read"
        raise DataError(f"{archive}: {what} ({e}); download it again (python -m src.download --force "
                        f"--data-dir {archive.parent})") from None
    except FileNotFoundError:
        raise DataError(f"{archive}: file not found") from None
    except OSError as e:  # disk full, read-only or unwritable target
        raise DataError(f"{archive}: cannot extract into {dest}: {e.strerror or e}") from None


def _remove_stale_extractions(dest: Path) -> None:
    """Delete the temporary folders of extractions a SIGKILL (or power cut) stopped: hidden, and up to
    290 MB each. One changed within STALE_AFTER (src.common.files) may belong to an extraction
    still running."""
    for old in dest.glob(".extract-*"):
        try:
            if old.is_dir() and is_stale(old):
                shutil.rmtree(old)
        except OSError:   # gone already, or not ours to delete: it only takes space
            pass


def _check_top(archive: Path, names: list[str], expect: tuple[str, ...]) -> None:
    """DataError unless the member names hold one of `expect` (files or folders) at the zip's top."""
    if any(n == e or n.startswith(f"{e}/") for n in names for e in expect):
        return
    wanted = " or ".join(map(repr, expect))
    nested = next((n for n in names if any(f"/{e}/" in f"/{n}/" for e in expect)), None)
    if nested is None:
        raise DataError(f"{archive}: holds no {wanted}")
    raise DataError(f"{archive}: holds {wanted} in a folder ({nested}), not at its top, as a re-zipped "
                    f"folder does; unzip it and pass the folder that holds them as --data-dir")


def _extract_if_missing(zip_path: Path, dest: Path, expect: str) -> None:
    if (dest / expect).exists():
        return
    log.info("extracting %s", zip_path)
    safe_extract(zip_path, dest, (expect,))


def _find_outer_zip(folder: Path) -> Path | None:
    named = folder / f"{COMPETITION}.zip"
    if named.is_file():
        return named
    for z in sorted(_zips(folder)):   # a hand-downloaded zip may be renamed
        try:
            with zipfile.ZipFile(z) as zf:
                if any(Path(n).name == f"{TRAIN}.zip" for n in zf.namelist()):
                    return z
        except (*ZIP_ERRORS, OSError) as e:   # another zip lying here need not stop the data beside it
            log.warning("%s: not a readable zip (%s); skipped", z, e)
    return None


def _zips(folder: Path) -> list[Path]:
    """The zips in folder, whatever the case of their suffix (.ZIP from some Windows tools)."""
    try:
        return [p for p in folder.iterdir() if p.suffix.lower() == ".zip" and p.is_file()]
    except OSError as e:
        raise DataError(f"{folder}: cannot list it ({e.strerror or e})") from None


def extract_dir(data_dir: Path) -> Path:
    """Where the zips of data_dir are extracted: into it, or, when it is read-only (a shared copy,
    a mount), into a folder of its own under competition/unpacked/, where writing does not fail with EACCES.
    Read-only is also a folder without write permission bits: root (Docker, Colab) passes os.access
    anywhere, and would otherwise fill a shared copy with 290 MB of extracted pages."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir() or (os.access(data_dir, os.W_OK | os.X_OK) and data_dir.stat().st_mode & 0o222):
        return data_dir
    resolved = data_dir.resolve()
    key = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    return DEFAULT_DATA_DIR / "unpacked" / f"{resolved.name}-{key}"


def data_dir_problem(data_dir: Path) -> str | None:
    """Why data_dir is no folder to look for the data in, or None."""
    data_dir = Path(data_dir)
    if data_dir.is_file():   # most often the competition zip itself
        return (f"is a file; --data-dir takes the folder that holds the competition zip "
                f"(here: {data_dir.parent})")
    return None if data_dir.is_dir() else "no such folder"


def prepare_data(data_dir: Path = DEFAULT_DATA_DIR, work_dir: Path | None = None) -> CompetitionData:
    """Find the competition data under data_dir, extracting what is needed into work_dir.

    Args:
        data_dir: a folder holding the outer zip, the inner zips, or extracted folders.
        work_dir: where extracted files go (default: `extract_dir(data_dir)`; kernels pass
            /kaggle/working).
    Returns: the checked CompetitionData.
    Raises: DataError naming the file and the problem.
    """
    data_dir = Path(data_dir)
    work_dir = Path(work_dir) if work_dir is not None else extract_dir(data_dir)
    problem = data_dir_problem(data_dir)
    if problem:
        raise DataError(f"{data_dir}: {problem}")
    sources = [data_dir] if work_dir == data_dir else [data_dir, work_dir]

    def find(name: str) -> Path | None:
        for s in sources:
            if (s / name).exists():
                return s / name
        return None

    if find(TRAIN) is None or find(CLEAN) is None or find(TEST) is None:
        outer = _find_outer_zip(data_dir)
        if outer is not None:
            inner = [f"{n}.zip" for n in (TRAIN, CLEAN, TEST)] + [f"{SAMPLE}.zip"]
            if not all((work_dir / n).exists() for n in inner[:3]):
                safe_extract(outer, work_dir, (inner[0], TRAIN))   # the inner zips, or folders zipped
    for name in (TRAIN, CLEAN, TEST):
        if find(name) is None and find(f"{name}.zip") is not None:
            _extract_if_missing(find(f"{name}.zip"), work_dir, name)
    if find(SAMPLE) is None and find(f"{SAMPLE}.zip") is not None:
        _extract_if_missing(find(f"{SAMPLE}.zip"), work_dir, SAMPLE)

    train, clean, test = find(TRAIN), find(CLEAN), find(TEST)
    if train is None or clean is None:
        # a zip unpacked by double-click lands in a folder of its own name, one level down
        below = sorted(d for d in data_dir.iterdir()
                       if d.is_dir() and (any(d.glob(f"{COMPETITION}*.zip")) or (d / TRAIN).is_dir()
                                          or (d / f"{TRAIN}.zip").is_file()))
        hint = f" {below[0]} holds it: pass --data-dir {below[0]}." if below else ""
        if test is not None and not below:   # the test pages alone: enough to predict, not to train
            hint = (f" Its {TEST}/ pages alone are cleaned by python -m src.make_submission --images {test}"
                    + (f" --sample {find(SAMPLE)}." if find(SAMPLE) else "."))
        raise DataError(
            f"{data_dir}: no competition data found (expected {COMPETITION}.zip, train.zip + "
            f"train_cleaned.zip, or train/ + train_cleaned/ folders).{hint} Run `python -m src.download` "
            f"or drop the zip from https://www.kaggle.com/c/{COMPETITION}/data into {data_dir}/")
    pairs = find_pairs(train, clean)
    tests = list_images(test) if test is not None else []
    return CompetitionData(root=train.parent, train_pairs=pairs, test_images=tests,
                           sample_submission=find(SAMPLE), synthetic=(train.parent / ".synthetic").exists())


def has_competition_data(data_dir: Path) -> bool:
    """True when data_dir holds anything prepare_data can work from."""
    d = Path(data_dir)
    return d.is_dir() and ((d / TRAIN).is_dir() or (d / f"{TRAIN}.zip").is_file() or bool(_zips(d)))


def competition_sample(data_dir: Path) -> Path | None:
    """The sample submission of the competition data in data_dir (extracting it if needed), or None."""
    data_dir = Path(data_dir)
    if (data_dir / SAMPLE).is_file():
        return data_dir / SAMPLE
    return prepare_data(data_dir).sample_submission if has_competition_data(data_dir) else None


# ---------------------------------------------------------------- pages


def find_pairs(noisy_dir: Path, clean_dir: Path) -> list[tuple[Path, Path]]:
    """Match noisy pages to their clean twins by file name; an unpaired page is an error."""
    noisy = {p.name: p for p in list_images(noisy_dir)}
    clean = {p.name: p for p in list_images(clean_dir)}
    for name in sorted(set(noisy) - set(clean)):
        raise DataError(f"{noisy[name]}: noisy page has no clean partner in {clean_dir}")
    for name in sorted(set(clean) - set(noisy)):
        raise DataError(f"{clean[name]}: clean page has no noisy partner in {noisy_dir}")
    return [(noisy[n], clean[n]) for n in sorted(noisy, key=lambda n: page_sort_key(Path(n)))]


def load_pair(noisy: Path, clean: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a noisy/clean pair; differing sizes raise DataError naming both files."""
    x, y = load_page(noisy), load_page(clean)
    if x.shape != y.shape:
        raise DataError(f"{noisy}: size {x.shape[1]}x{x.shape[0]} differs from its clean partner "
                        f"{clean} ({y.shape[1]}x{y.shape[0]})")
    return x, y


def load_pairs(pairs: list[tuple[Path, Path]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [load_pair(n, c) for n, c in pairs]


def count_csv_rows(path: Path) -> int:
    """Data rows in a CSV (header excluded), counted in binary chunks: fast on the 186 MB sample."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, n + (last != b"\n") - 1)
