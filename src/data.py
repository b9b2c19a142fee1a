"""Find, prepare and load the competition data.

The data may arrive as the outer zip Kaggle's CLI downloads (zips inside a zip), as the four inner
zips, or as extracted folders (a Kaggle kernel mount). `prepare_data` accepts all three, extracts
what is missing once (atomically, refusing members that would escape the target) and returns the
checked page lists.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from src.files import atomic_write, case_clashes, is_stale

log = logging.getLogger(__name__)

COMPETITION = "denoising-dirty-documents"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("competition")
SYNTHETIC_DIR = DEFAULT_DATA_DIR / "synthetic"   # the embedded default, generated on first use
TRAIN, CLEAN, TEST = "train", "train_cleaned", "test"
SAMPLE = "sampleSubmission.csv"
IMAGE_SUFFIXES = (".png",)
# what reading a zip raises beyond OSError: corrupt or truncated (the first three), a compression Python
# lacks (NotImplementedError: Deflate64, which Windows writes for large files), encrypted (RuntimeError)
ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError)
PAGE_SIZES = {(258, 540), (420, 540)}   # (height, width) of every page of the competition, train and test


class DataError(Exception):
    """Bad or missing input data; the message names the file and the problem."""


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


def page_sort_key(path: Path):
    """Numeric page ids sort as numbers (2 before 10), other names after them (a superscript two is a
    digit to str.isdigit, not to int); ties (01.png and 1.png, x.png and x.PNG) by file name, not by
    the order the disk lists them in."""
    stem = path.stem
    return (0, int(stem), "", path.name) if stem.isascii() and stem.isdigit() else (1, 0, stem, path.name)


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
        raise DataError(f"{archive}: {what} ({e}); download it again") from None
    except FileNotFoundError:
        raise DataError(f"{archive}: file not found") from None
    except OSError as e:  # disk full, read-only or unwritable target
        raise DataError(f"{archive}: cannot extract into {dest}: {e.strerror or e}") from None


def _remove_stale_extractions(dest: Path) -> None:
    """Delete the temporary folders of extractions a SIGKILL (or power cut) stopped: hidden, and up to
    290 MB each. One changed within files.STALE_AFTER may belong to an extraction still running."""
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
    a mount), into a folder of its own under competition/unpacked/ (it failed with EACCES before).
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
        raise DataError(
            f"{data_dir}: no competition data found (expected {COMPETITION}.zip, train.zip + "
            f"train_cleaned.zip, or train/ + train_cleaned/ folders). Run `python -m src.download` "
            f"or drop the zip from https://www.kaggle.com/c/{COMPETITION}/data into {data_dir}/")
    pairs = find_pairs(train, clean)
    tests = list_images(test) if test is not None else []
    return CompetitionData(root=train.parent, train_pairs=pairs, test_images=tests,
                           sample_submission=find(SAMPLE), synthetic=(train.parent / ".synthetic").exists())


def prepare_or_synthesize(data_dir: Path = DEFAULT_DATA_DIR, work_dir: Path | None = None,
                          log=print) -> CompetitionData:
    """prepare_data, or, for the default folder holding no data, the embedded synthetic set.

    Only the default folder falls back: a folder the user named that holds nothing is an error.
    """
    data_dir = Path(data_dir)
    if has_competition_data(data_dir) or data_dir != DEFAULT_DATA_DIR:
        return prepare_data(data_dir, work_dir)
    from src.synthetic import make_synthetic_competition  # only needed on this path
    root = make_synthetic_competition(SYNTHETIC_DIR)
    log(f"NOTE: no competition data in {data_dir}/ - using the SYNTHETIC embedded default in {root}/. "
        f"Its scores say nothing about the competition; run `python -m src.download` for the real data.")
    return prepare_data(root)


def text_groups(cleans: list[np.ndarray]) -> list[int]:
    """A group number per page, shared by pages whose clean twins are identical: the same text.

    The competition renders each text once and lays it over several backgrounds (the 115 public
    pairs hold 36 texts, 2-4 pages each), so a page's text is usually also on another page.
    """
    first: dict[tuple, int] = {}
    return [first.setdefault((c.shape, hashlib.sha1(np.ascontiguousarray(c).tobytes()).digest()), len(first))
            for c in cleans]


def split_pages(n: int, val_fraction: float = 0.15, folds: int = 0, fold: int = 0,
                seed: int = 0, groups: list | None = None) -> tuple[list[int], list[int]]:
    """Reproducible split of page indices into (train, validation), by page or by group.

    folds > 1: K-fold, validation is fold `fold` (folds cover every page once, for fold ensembles).
    Otherwise a random `val_fraction` share (at least one page when the share is positive).
    groups (a label per page, e.g. `text_groups`'s numbers): a group's pages stay on one side, and the
    share is reached with whole groups. None: every page is its own group, the same split as before.
    """
    unit = "pages" if groups is None else "texts (--split-by text)"
    groups = list(range(n)) if groups is None else groups
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group numbers for {n} pages")
    members: dict[int, list[int]] = {}   # by first page: with a group per page, the order of the pages
    for page, group in enumerate(groups):
        members.setdefault(group, []).append(page)
    firsts = list(members)
    order = [members[firsts[g]] for g in np.random.default_rng(seed).permutation(len(firsts)).tolist()]
    if folds > 1:
        if not 0 <= fold < folds:
            raise ValueError(f"--fold {fold} is outside 0..{folds - 1}")
        if folds > len(order):   # else a fold past the last page or text holds out nothing
            raise ValueError(f"--folds {folds}: more than the {len(order)} {unit} to split")
        val = sum(order[fold::folds], [])
    elif val_fraction > 0:
        if not val_fraction < 1:
            raise ValueError(f"--val-fraction {val_fraction} must be below 1")
        want, val = max(1, round(n * val_fraction)), []
        for pages in order:
            if len(val) >= want:
                break
            val += pages
    else:
        val = []
    held = set(val)
    train = [i for i in range(n) if i not in held]
    if not train:
        raise ValueError(f"no training pages left out of {n} after the validation split")
    return train, sorted(val)


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

def list_images(folder: Path) -> list[Path]:
    """PNG pages in folder, sorted by page id; hidden files (macOS's `._1.png` beside `1.png`: no
    image) are not pages. Raises DataError for a missing or empty folder, and for two pages whose
    names differ only in case (`x.png`, `x.PNG`: one id, and one file on a case-blind disk)."""
    folder = Path(folder)
    if folder.is_file():     # most often one page of the folder meant
        raise DataError(f"{folder}: is a file; pass the folder that holds the .png pages "
                        f"(here: {folder.parent})")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted((p for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()),
                   key=page_sort_key)
    if not files:
        raise DataError(f"{folder}: no .png pages in this folder")
    for first, second, *_ in case_clashes(p.name for p in files):   # every name ends in .png
        raise DataError(f"{folder}: {first} and {second} are one page id; rename or remove one")
    return files


def find_pairs(noisy_dir: Path, clean_dir: Path) -> list[tuple[Path, Path]]:
    """Match noisy pages to their clean twins by file name; an unpaired page is an error."""
    noisy = {p.name: p for p in list_images(noisy_dir)}
    clean = {p.name: p for p in list_images(clean_dir)}
    for name in sorted(set(noisy) - set(clean)):
        raise DataError(f"{noisy[name]}: noisy page has no clean partner in {clean_dir}")
    for name in sorted(set(clean) - set(noisy)):
        raise DataError(f"{clean[name]}: clean page has no noisy partner in {noisy_dir}")
    return [(noisy[n], clean[n]) for n in sorted(noisy, key=lambda n: page_sort_key(Path(n)))]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND = b"IEND\xaeB`\x82"   # a PNG's last chunk, with its CRC


def _decode_quietly(buf: np.ndarray):
    """cv2.imdecode without OpenCV's own warnings: our DataError names the file instead."""
    from cv2.utils import logging as cvlog
    level = cvlog.getLogLevel()
    cvlog.setLogLevel(cvlog.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    finally:
        cvlog.setLogLevel(level)


def png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's header, without decoding the image; None for a file that is not one."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def load_page(path: Path) -> np.ndarray:
    """Read a page as float32 grayscale in [0, 1], shape (H, W).

    Colour pages are converted to gray with a warning (scans are sometimes saved as RGB);
    unreadable, truncated or non-image files raise DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:   # permissions, a failing disk
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    if bytes(buf[:8]) == PNG_SIGNATURE and IEND not in buf.tobytes():   # bytes may follow IEND
        # else libpng prints its own error line past OpenCV's silenced log, before ours
        raise DataError(f"{path}: not a readable image (truncated PNG: it ends before its IEND chunk)")
    img = _decode_quietly(buf) if buf.size else None
    if img is None:
        raise DataError(f"{path}: not a readable image (truncated or not a PNG)")
    if img.ndim == 3:
        log.warning("%s: colour image (%d channels) converted to grayscale", path, img.shape[2])
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / scale


def save_page(path: Path, page: np.ndarray) -> None:
    """Write a page as an 8-bit grayscale PNG, atomically: uint8 as it is, floats in [0, 1] rounded
    (values outside clipped), so that load_page reads it back to within 1/510."""
    path = Path(path)
    if page.ndim != 2:
        raise DataError(f"{path}: a page is (height, width) grayscale, not shape {page.shape}")
    img = page if page.dtype == np.uint8 else np.rint(np.clip(page, 0, 1) * 255).astype(np.uint8)
    buf = cv2.imencode(".png", img)[1]
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.tobytes()))


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
