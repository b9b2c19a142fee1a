"""Handwritten digits for autoencoder pretraining: MNIST IDX files or Kaggle Digit Recognizer CSV.

`load_digits(path)` accepts
  * a folder with the four MNIST IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or `.gz`), or
  * Digit Recognizer's `train.csv` (label + 784 pixel columns), or a folder holding it. Its
    test.csv has no labels, so a `test_fraction` of train.csv is held out instead, chosen by a
    generator seeded with `seed` (the same rows for the same file and seed).
Images come back as float32 (N, 28, 28) in [0, 1] (pixel / 255), labels as int64 (N,) in 0..9.
A bad file raises `DataError` naming the file and what is wrong with it.
"""
from __future__ import annotations

from dataclasses import dataclass
import gzip
import math
from pathlib import Path
import struct
import zlib

import numpy as np

from src.common.errors import DataError

IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801   # unsigned bytes; 3 and 1 dimensions
SIDE = 28
CSV_COLUMNS = 1 + SIDE * SIDE


@dataclass(frozen=True)
class Digits:
    """Train and test digits: images float32 (N, H, W) in [0, 1], labels int64 (N,)."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def describe(self) -> str:
        h, w = self.train_images.shape[1:]
        return (f"{len(self.train_images)} train / {len(self.test_images)} test digits of {h}x{w} "
                f"from {self.source}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array of unsigned bytes whose magic number must be `magic` (0x803 images, 0x801 labels)."""
    path = Path(path)
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if found is not None and found != magic:
        raise DataError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                        f"({'images' if magic == IMAGE_MAGIC else 'labels'} of unsigned bytes)")
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)   # Python ints: a corrupt header's dims would overflow int64
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{path}: {problem}: {len(raw)} bytes, the header {dims} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write uint8 `array` (N,) or (N, H, W) as an IDX file (gzip when the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(f">I{array.ndim}I", 0x800 | array.ndim, *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def _find_idx(folder: Path, stem: str) -> Path:
    # downloads name them either way: train-images-idx3-ubyte or train-images.idx3-ubyte
    for name in (stem, stem.replace("-idx", ".idx")):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: no {stem} or {stem}.gz")


def _pair(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path):
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} is not a digit 0-9")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def load_idx_folder(folder: Path) -> Digits:
    """The four MNIST IDX files (raw or .gz) of `folder`."""
    folder = Path(folder)
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(p, IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
              for key, p in paths.items()}
    train, test = (_pair(arrays[f"{part}_images"], arrays[f"{part}_labels"], paths[f"{part}_images"],
                         paths[f"{part}_labels"]) for part in ("train", "test"))
    for part, images in (("train", train[0]), ("test", test[0])):   # else a failure after an epoch
        if not len(images):
            raise DataError(f"{paths[f'{part}_images']}: holds no images")
    if test[0].shape[1:] != train[0].shape[1:]:
        raise DataError(f"{paths['test_images']}: images of {'x'.join(map(str, test[0].shape[1:]))}, but "
                        f"{paths['train_images']} holds {'x'.join(map(str, train[0].shape[1:]))}")
    return Digits(*train, *test, source=str(folder))


def read_digit_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Digit Recognizer train.csv -> (images float32 (N, 28, 28) in [0, 1], labels int64 (N,)).

    A header row (label,pixel0,...) is optional. Every row must hold 785 integers: a label 0-9
    and 784 pixels 0-255.
    """
    import pandas as pd

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:   # -sig: Excel's BOM, not part of the first cell
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as text ({e})") from None
    if not first:
        raise DataError(f"{path}: empty file")
    cells = first.split(",")
    if len(cells) != CSV_COLUMNS:
        raise DataError(f"{path}: {len(cells)} columns, expected {CSV_COLUMNS} "
                        f"(label + {SIDE}x{SIDE} pixels)")
    has_header = not _is_number(cells[0].strip().strip('"'))   # 5, 5.0 and "5" are a label: no header
    try:   # header=None: given the header, pandas would take a row's extra field for an index
        df = pd.read_csv(path, header=None, skiprows=int(has_header), engine="c", encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: malformed CSV ({str(e).strip().splitlines()[-1]})") from None
    if df.shape[1] != CSV_COLUMNS:
        raise DataError(f"{path}: {df.shape[1]} columns, expected {CSV_COLUMNS}")
    numeric = all(pd.api.types.is_numeric_dtype(t) for t in df.dtypes)
    numbers = df if numeric else df.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        cell = df.iat[row, col]
        what = "a missing value" if pd.isna(cell) else f"{cell!r} is not a number"
        raise DataError(f"{path}: line {_line(path, row, has_header)}, column {col + 1}: {what}")
    values = numbers.to_numpy(dtype=np.float64)
    labels, pixels = values[:, 0], values[:, 1:]
    if ((labels < 0) | (labels > 9) | (labels % 1 != 0)).any():
        row = int(np.flatnonzero((labels < 0) | (labels > 9) | (labels % 1 != 0))[0])
        raise DataError(f"{path}: line {_line(path, row, has_header)}: label {labels[row]:g} is not a digit "
                        f"0-9")
    if ((pixels < 0) | (pixels > 255)).any():
        row = int(np.argwhere((pixels < 0) | (pixels > 255))[0][0])
        raise DataError(f"{path}: line {_line(path, row, has_header)}: pixel values must lie in 0..255")
    images = (pixels.astype(np.float32) / 255.0).reshape(-1, SIDE, SIDE)
    return images, labels.astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line(path: Path, row: int, header: bool) -> int:
    """The file line (1-based) of data row `row` (0-based), which pandas counts without blank lines (and
    without lines of spaces)."""
    with open(path, encoding="utf-8-sig") as f:
        rows = (n for n, line in enumerate(f, 1) if line.strip() and not (header and n == 1))
        return next((n for i, n in enumerate(rows) if i == row), row + 1 + header)


def load_csv(path: Path, test_fraction: float = 1 / 7, seed: int = 0) -> Digits:
    """train.csv split into train and test parts (by a permutation seeded with `seed`)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    images, labels = read_digit_csv(path)
    n_test = int(round(len(images) * test_fraction))
    if n_test < 1 or n_test >= len(images):
        raise DataError(f"{path}: {len(images)} rows are too few to hold out a test part of "
                        f"{test_fraction:.0%}")
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return Digits(images[train], labels[train], images[test], labels[test],
                  source=f"{path} (test: {n_test} rows held out, seed {seed})")


def load_digits(path: Path, test_fraction: float = 1 / 7, seed: int = 0) -> Digits:
    """MNIST from an IDX folder, a CSV file, or a folder holding train.csv (IDX preferred)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path}: expected a folder of MNIST IDX files or a Digit Recognizer .csv file")
        return load_csv(path, test_fraction, seed)
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder. Point --data at the folder of the four MNIST "
                        f"IDX files or a Digit Recognizer train.csv, or get it with `python -m src.download "
                        f"--competition digit-recognizer`")
    stems = list(IDX_FILES.values())
    # any one of the four: a folder missing the others is named by _find_idx, file by file
    if any(any(path.glob(f"{s}*")) or any(path.glob(s.replace("-idx", ".idx") + "*")) for s in stems):
        return load_idx_folder(path)
    if (path / "train.csv").is_file():
        return load_csv(path / "train.csv", test_fraction, seed)
    raise DataError(f"{path}: holds neither the MNIST IDX files ({', '.join(s + '[.gz]' for s in stems)}) "
                    f"nor a Digit Recognizer train.csv; get one with `python -m src.download "
                    f"--competition digit-recognizer`")
