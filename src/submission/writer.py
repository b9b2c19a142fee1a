"""Write the submission CSV: `id,value` rows, id `<image>_<row>_<col>` (1-based), for 14.2 million
pixels: whole pages are formatted with NumPy from cached byte templates, never a Python string per pixel.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
from pathlib import Path
import zipfile

import numpy as np
from numpy.lib.stride_tricks import as_strided

from src.common.files import atomic_write
from src.submission.reader import (COMPRESSIONS, CSV_NAME, HEADER, SubmissionError, check_against_sample,
                                   compression_of)

COMPRESSLEVEL = 1                  # level 6 is 6x slower for a file 25% smaller; uploads don't care
DECIMALS = 4                       # rounding moves a pixel by <= 5e-5, the RMSE by ~1e-7 in practice


@functools.cache
def _value_text() -> np.ndarray:
    """ASCII of q / 10**DECIMALS for q = 0..10**DECIMALS, shape (10**DECIMALS + 1, DECIMALS + 2)."""
    scale = 10 ** DECIMALS
    text = "".join(f"{q / scale:.{DECIMALS}f}" for q in range(scale + 1)).encode()
    return np.frombuffer(text, np.uint8).reshape(scale + 1, DECIMALS + 2)


@functools.lru_cache(maxsize=8)
def _numbers(n: int) -> list[tuple[int, int, np.ndarray]]:
    """1..n in runs of equal digit count: (first - 1, count, ASCII digits shaped (count, ndigits))."""
    runs, lo = [], 1
    while lo <= n:
        hi = min(n, 10 ** len(str(lo)) - 1)
        digits = np.array([str(i).encode() for i in range(lo, hi + 1)]).view(np.uint8)
        runs.append((lo - 1, hi - lo + 1, digits.reshape(hi - lo + 1, -1)))
        lo = hi + 1
    return runs


def _blocks_of_lines(buf: np.ndarray, h: int, w: int, prefix: int):
    """Views of a page's CSV bytes, one per block of equally long lines, shaped (cols, rows, line).

    Lines run column by column like the sample's, so the columns whose numbers have the same digit
    count are equally long, and within them the rows with equal digit counts: at most 9 blocks.
    Yields (view, first col - 1, first row - 1, row digits, col digits).
    """
    offset = 0
    for c0, nc, cdigits in _numbers(w):
        # prefix _ row _ col , value \n
        lengths = [prefix + rdigits.shape[1] + cdigits.shape[1] + DECIMALS + 6 for *_, rdigits in _numbers(h)]
        column = sum(n * length for (_, n, _), length in zip(_numbers(h), lengths))
        for (r0, nr, rdigits), length in zip(_numbers(h), lengths):
            yield as_strided(buf[offset:], (nc, nr, length), (column, length, 1)), c0, r0, rdigits, cdigits
            offset += nr * length
        offset += (nc - 1) * column


@functools.lru_cache(maxsize=8)
def _template(h: int, w: int, prefix: int) -> np.ndarray:
    """A page's CSV bytes with the ids' `_<row>_<col>,` and the line ends filled in, the rest to fill."""
    size = sum(nc * nr * (prefix + rd.shape[1] + cd.shape[1] + DECIMALS + 6)
               for _, nc, cd in _numbers(w) for _, nr, rd in _numbers(h))
    buf = np.full(size, ord("_"), np.uint8)          # the underscores stay
    for view, _, _, rdigits, cdigits in _blocks_of_lines(buf, h, w, prefix):
        dr, dc = rdigits.shape[1], cdigits.shape[1]
        view[..., prefix + 1:prefix + 1 + dr] = rdigits
        view[..., prefix + 2 + dr:prefix + 2 + dr + dc] = cdigits[:, None]
        view[..., prefix + 2 + dr + dc] = ord(",")
        view[..., -1] = ord("\n")
    buf.flags.writeable = False
    return buf


def page_csv(page_id: str, pred: np.ndarray) -> np.ndarray:
    """The CSV rows of one page as uint8 ASCII. pred: (H, W) floats, clipped to [0, 1]."""
    pred = np.asarray(pred)
    if pred.ndim != 2 or pred.size == 0:
        raise SubmissionError(f"page {page_id}: prediction has shape {pred.shape}; want (H, W)")
    if np.isnan(pred).any():
        raise SubmissionError(f"page {page_id}: {int(np.isnan(pred).sum()):,} NaN predictions")
    prefix = np.frombuffer(page_id.encode(), np.uint8)
    buf = _template(*pred.shape, len(prefix)).copy()
    values = _value_text()[np.rint(np.clip(pred.T, 0, 1) * 10 ** DECIMALS).astype(np.intp)]  # (W, H, 6)
    for view, c0, r0, _, _ in _blocks_of_lines(buf, *pred.shape, len(prefix)):
        view[..., :len(prefix)] = prefix
        view[..., -DECIMALS - 3:-1] = values[c0:c0 + view.shape[0], r0:r0 + view.shape[1]]
    return buf


def output_compression(out: Path, compress: str | None = None) -> str | None:
    """What out's name implies; ValueError when compress says otherwise (a.csv.zip with "gz", a.csv
    with "zip": the name would lie about the content; `submission_path` names the file first)."""
    implied = compression_of(out)
    if compress is not None and implied != compress:
        name = f"a .{implied} name" if implied else "a name without .zip or .gz"
        raise ValueError(f"{out}: {name}, but compress={compress!r}; make them agree")
    return implied


def submission_path(out: Path, compress: str | None = None) -> tuple[Path, str | None]:
    """(file, compression) for --out and --compress: .zip/.gz is appended unless out ends with it."""
    out = Path(out)
    if compress is not None and compression_of(out) is None:
        out = out.with_name(f"{out.name}.{compress}")
    return out, output_compression(out, compress)


@contextlib.contextmanager
def _open_for_writing(tmp: Path, out: Path, compress: str | None):
    with open(tmp, "wb") as raw:
        if compress == "zip":
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL) as zf, \
                    zf.open(CSV_NAME, "w") as f:
                yield f
        elif compress == "gz":
            with gzip.GzipFile(out.name, "wb", COMPRESSLEVEL, raw) as f:
                yield f
        else:
            yield raw


def write_submission(pages, out: Path, compress: str | None = None, sample: Path | None = None) -> int:
    """Stream pages into a submission file, atomically (a failure leaves `out` as it was).

    Args:
        pages: iterable of (page_id, pred), pred (H, W) floats in [0, 1] (clipped when written).
        out: the file to write; compress None, "zip" (holding submission.csv) or "gz" (None: what
            a .zip or .gz name implies, so the name never lies about the content).
        sample: when given, the written ids must equal the sample submission's ids.
    Returns: the number of rows written.
    Raises: SubmissionError for a bad page, a repeated page or ids that differ from the sample;
        ValueError for a compression out's name contradicts.
    """
    if compress not in COMPRESSIONS:
        raise ValueError(f"compress={compress!r}; choose one of {COMPRESSIONS}")
    out = Path(out)
    compress = output_compression(out, compress)
    written: dict[str, tuple[int, int]] = {}

    def write(tmp: Path) -> None:
        with _open_for_writing(tmp, out, compress) as f:
            f.write(f"{HEADER}\n".encode())
            for page_id, pred in pages:
                page_id = str(page_id)
                if page_id in written:
                    raise SubmissionError(f"page {page_id} given twice")
                f.write(memoryview(page_csv(page_id, pred)))
                written[page_id] = np.shape(pred)
        if sample is not None:   # before the rename: a file with the wrong ids never replaces a good one
            check_against_sample(written, Path(sample))

    atomic_write(out, write)
    return sum(h * w for h, w in written.values())
