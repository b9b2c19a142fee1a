"""Read and validate submission CSVs: `id,value` rows, id `<image>_<row>_<col>` (1-based).

The test set is 14.2 million pixels, so the validator parses blocks of lines with pandas' C reader and
never holds a Python string per pixel. Ids are compared as int64 keys against a `_Grid`, the
complete id set of some pages laid out column by column like the sample submission.
"""
from __future__ import annotations

import codecs
import contextlib
from dataclasses import dataclass, field
import gzip
import io
from pathlib import Path
import re
import zipfile

import numpy as np
import pandas as pd

from src.common.errors import DataError
from src.common.wording import listed
from src.data.competition import DEFAULT_DATA_DIR, ZIP_ERRORS, data_dir_problem
from src.data.pages import list_images, load_page
from src.inference.metrics import pooled_rmse

HEADER = "id,value"
CSV_NAME = "submission.csv"        # the member name inside a zipped submission
COMPRESSIONS = (None, "zip", "gz")
BLOCK = 1 << 22                    # bytes of CSV parsed at a time (pandas needs ~10x this)
EXAMPLES = 5
_BITS = 21                         # key = image << 42 | col << 21 | row: sorts like the sample's rows
_LARGEST = 999_999                 # larger numbers in an id make a malformed line (and fit in _BITS)
_MASK = (1 << _BITS) - 1
_READ_ERRORS = (OSError, DataError, *ZIP_ERRORS)   # gzip's errors are OSError, EOFError and zlib.error
MALFORMED = "malformed lines (want <image>_<row>_<col>,<value>)"
NON_NUMERIC = "non-numeric values"
EXTRA_IDS, MISSING_IDS = "extra ids", "missing ids"   # against the sample or truth


class SubmissionError(Exception):
    """A submission that cannot be written or whose ids do not match the reference."""


@dataclass
class ValidationReport:
    ok: bool
    rows: int                                   # data rows read (malformed ones included)
    problems: list[str] = field(default_factory=list)
    rmse: float | None = None                   # with `truth`: the competition's score
    ids_differ: bool = False                    # ids missing or extra against the sample or truth
    ids_checked: bool = True                    # False: against no sample or truth, the format alone

    def text(self, path: Path, valid: str = "a valid submission") -> str:
        """The verdict as the commands print it: OK with the rows (and RMSE), or INVALID and each problem;
        `valid`: what an OK file is (for the ids of the synthetic demo, not Kaggle's)."""
        if self.ok and not self.ids_checked:   # a fragment of a submission is well-formed too
            return f"OK: {path} is well-formed, {self.rows:,} rows; its ids were not checked"
        if self.ok:
            score = "" if self.rmse is None else f", RMSE {self.rmse:.6f}"
            return f"OK: {path} is {valid}, {self.rows:,} rows{score}"
        lines = [f"INVALID: {path}, {self.rows:,} rows", *(f"  - {problem}" for problem in self.problems)]
        if self.rmse is not None:
            lines.append(f"  RMSE over the truth pages anyway: {self.rmse:.6f}")
        return "\n".join(lines)


def compression_of(path: Path) -> str | None:
    """The compression a file name implies: "zip" for .zip, "gz" for .gz, None (plain CSV) otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in COMPRESSIONS else None


def sample_problem(sample: Path) -> str | None:
    """Why `sample` cannot be a sample submission to check ids against (None: a file, it may be): the
    commands say so before predicting or reading anything."""
    if sample.is_file():
        return None
    return "is a folder, not a sample submission" if sample.is_dir() else "no such file"


def reference_problems(data_dir: Path | None = None, sample: Path | None = None) -> list[str]:
    """The usage errors in the --data-dir and --sample a command was given: a folder named but missing
    is a typo, not "no data" (the default competition/ may hold none yet), and a missing sample would
    otherwise be found only after the work it checks."""
    problems = []
    named = data_dir is not None and Path(data_dir) != DEFAULT_DATA_DIR
    problem = data_dir_problem(data_dir) if named else None
    if problem:
        problems.append(f"--data-dir {data_dir}: {problem}")
    problem = sample_problem(sample) if sample is not None else None
    if problem:
        problems.append(f"--sample {sample}: {problem}")
    return problems


# ---------------------------------------------------------------- reading

def read_submission(path: Path) -> pd.DataFrame:
    """A submission (plain, .zip or .gz CSV) as a DataFrame with columns id (str) and value."""
    return pd.read_csv(path, dtype={"id": str})


@contextlib.contextmanager
def _open_csv(path: Path):
    """Binary stream of a plain, .zip (exactly one member) or .gz CSV."""
    compress = compression_of(path)
    if compress == "zip":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1:
                mac = any(n.startswith("__MACOSX/") for n in names)   # Finder's "Compress" adds these
                raise zipfile.BadZipFile(f"want exactly one file in the zip, found {len(names)}" + (
                    " (__MACOSX/ is macOS Finder's: zip the CSV with `zip -X`, or make_submission "
                    "--compress zip)" if mac else ""))
            with zf.open(names[0]) as f:
                yield f
    elif compress == "gz":
        with gzip.open(path, "rb") as f:
            yield f
    else:
        with open(path, "rb") as f:
            yield f


class _Tally:
    """Problems by kind: how many, and the first few examples."""

    def __init__(self):
        self.found: dict[str, list] = {}
        self.bad_keys: list[np.ndarray] = []   # ids read off bad lines: not reported again as missing

    def add(self, kind: str, count: int, examples: list[str] = ()) -> None:
        if count > 0:
            entry = self.found.setdefault(kind, [0, []])
            entry[0] += count
            entry[1].extend(examples[:EXAMPLES - len(entry[1])])

    def note(self, message: str) -> None:
        self.found[message] = None

    def lines(self) -> list[str]:
        """One line per kind: `kind: count (e.g. a, b, c)`, or just the note."""
        return [kind if e is None else f"{kind}: {e[0]:,}" + (f" (e.g. {', '.join(e[1])})" if e[1] else "")
                for kind, e in self.found.items()]


def _ids(keys: np.ndarray) -> list[str]:
    return [f"{k >> 2 * _BITS}_{k & _MASK}_{k >> _BITS & _MASK}" for k in keys.tolist()]


def _ndigits(x: np.ndarray) -> np.ndarray:
    return np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), x, side="right") + 1


def _parse_fast(blk: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of a block of well-formed lines; ValueError on anything unusual."""
    raw = np.frombuffer(blk, np.uint8)
    ends, commas = np.flatnonzero(raw == ord("\n")), np.flatnonzero(raw == ord(","))
    starts = np.concatenate(([0], ends[:-1] + 1))
    if len(commas) != len(ends) or ((commas < starts) | (commas > ends)).any() \
            or blk.count(b"_") != 2 * len(ends):
        raise ValueError("not one comma and two underscores per line")
    cols = ["image", "row", "col", "value"]
    df = pd.read_csv(io.BytesIO(blk.replace(b"_", b",")), header=None, names=cols,
                     dtype={"image": np.int64, "row": np.int64, "col": np.int64, "value": np.float64})
    img, row, col, val = (df[c].to_numpy() for c in cols)
    # a sign, a space or a leading zero would parse, yet Kaggle would not recognise the id
    if len(df) != len(ends) or not isinstance(df.index, pd.RangeIndex) \
            or (commas - starts != _ndigits(img) + _ndigits(row) + _ndigits(col) + 2).any() \
            or max(img.max(), row.max(), col.max()) > _LARGEST:
        raise ValueError("ids not written as plain numbers")
    return img << 2 * _BITS | col << _BITS | row, val


_NUMBER = rb"(0|[1-9]\d{0,5})"      # a page, row or column number as the ids write it
_ID = _NUMBER + rb"_" + _NUMBER + rb"_" + _NUMBER
_LINE = re.compile(_ID + rb",([^,_]*)")
_ID_FIRST = re.compile(_ID)   # the id at the start of a malformed line, when it has one


def is_page_id(name: str) -> bool:
    """Whether a page named `name` (a file's stem) writes ids that Kaggle and validate_submission read."""
    return re.fullmatch(_NUMBER.decode(), name) is not None


def _key(m: re.Match) -> int:
    img, row, col = map(int, m.groups()[:3])
    return img << 2 * _BITS | col << _BITS | row


def _parse_slow(blk: bytes, tally: _Tally, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Line by line, for the few blocks holding bad lines: tallies them, keeps the good ones.

    first: the file line number of blk's first line, for the examples.
    """
    keys, values, bad = [], [], []
    for n, line in enumerate(blk.removesuffix(b"\n").split(b"\n"), first):
        line = line.removesuffix(b"\r")
        m = _LINE.fullmatch(line)
        if m is None:
            text = repr(line.decode("utf-8", "replace"))[:60]
            tally.add(MALFORMED, int(bool(line.strip())), [f"line {n}: {text}"])
            if (m := _ID_FIRST.match(line)) is not None:
                bad.append(_key(m))
            continue
        try:
            value = float(m[4]) if m[4].strip() else np.nan   # pandas reads an empty value as NaN
        except ValueError:
            tally.add(NON_NUMERIC, 1, [f"line {n}: {m[1].decode()}_{m[2].decode()}_{m[3].decode()}="
                                       f"{m[4].decode('utf-8', 'replace')[:20]!r}"])
            bad.append(_key(m))
            continue
        keys.append(_key(m))
        values.append(value)
    if bad:
        tally.bad_keys.append(np.array(bad, np.int64))
    return np.array(keys, np.int64), np.array(values, np.float64)


def _parse(blk: bytes, tally: _Tally, first: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fast parse; on failure halve the block until the bad lines sit in small slow-parsed pieces.

    first: the file line number of blk's first line.
    """
    try:
        return [_parse_fast(blk)]
    except (ValueError, OverflowError):   # OverflowError: a number past 2**64 in an id
        if blk.count(b"\n") <= 1000:
            return [_parse_slow(blk, tally, first)]
        mid = blk.rfind(b"\n", 0, len(blk) // 2) + 1 or blk.find(b"\n") + 1
        return _parse(blk[:mid], tally, first) + _parse(blk[mid:], tally, first + blk.count(b"\n", 0, mid))


def _chunks(f):
    """Pieces of stream f of about BLOCK bytes that end at a line end."""
    carry = b""
    while chunk := f.read(BLOCK):
        blk = carry + chunk
        cut = blk.rfind(b"\n") + 1
        if cut:
            yield blk[:cut]
        carry = blk[cut:]
    if carry:
        yield carry + b"\n"


# R's write.csv quotes fields ("1_2_3",0.5 under "id","value"), which CSV readers read as unquoted. Only
# quotes around a whole field go: "1_2_3,0.5" is one field to a CSV reader, and 1_2_3",0.5 an id with a
# quote in it, so what is left of such lines reads as malformed.
_QUOTED = re.compile(rb'(^|,)"([^",\r\n]*)"(?=,|\r?$)', re.M)


def _unquote(blk: bytes) -> bytes:
    if b'"' not in blk:
        return blk
    lines = blk.count(b"\n") + (not blk.endswith(b"\n"))
    if blk.startswith(b'"') and blk.count(b'\n"') == lines - 1 and blk.count(b'"') == 2 * lines \
            == 2 * blk.count(b'",'):   # each line "<id>",<value>, as R writes them: 20x faster than _QUOTED
        return blk.replace(b'"', b"")
    return _QUOTED.sub(rb"\1\2", blk)


def _rows(f, tally: _Tally):
    """(keys, values) per block of the data lines of stream f, read past the header; bad lines go to
    the tally."""
    first = 2
    for blk in _chunks(f):
        yield from _parse(_unquote(blk), tally, first)
        first += blk.count(b"\n")


# ---------------------------------------------------------------- checking ids

class _Grid:
    """The complete id set of some pages, numbered column by column in a flat array of `size` pixels.

    pages: (image, H, W) triples; page k's pixels are offsets[k] .. offsets[k + 1] - 1.
    """

    def __init__(self, pages: list[tuple[int, int, int]]):
        table = np.array(sorted(pages), np.int64).reshape(-1, 3)
        self.images, self.heights, self.widths = table.T
        self.offsets = np.concatenate(([0], np.cumsum(self.heights * self.widths)))
        self.size = int(self.offsets[-1])

    def locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat position, inside) per key; inside is False for ids of other pages or off the page."""
        img, col, row = keys >> 2 * _BITS, keys >> _BITS & _MASK, keys & _MASK
        if not len(self.images):
            return np.zeros_like(keys), np.zeros(len(keys), bool)
        k = np.minimum(np.searchsorted(self.images, img), len(self.images) - 1)
        h = self.heights[k]
        inside = (self.images[k] == img) & (row >= 1) & (row <= h) & (col >= 1) & (col <= self.widths[k])
        return self.offsets[k] + (col - 1) * h + row - 1, inside

    def keys(self, flat: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.offsets, flat, side="right") - 1
        rem, h = flat - self.offsets[k], self.heights[k]
        return self.images[k] << 2 * _BITS | (rem // h + 1) << _BITS | rem % h + 1


def _repeats(x: np.ndarray) -> np.ndarray:
    """True where x holds a value seen earlier in x."""
    rep = np.zeros(len(x), bool)
    if len(x) > 1 and not (x[1:] > x[:-1]).all():    # sorted files skip the sort
        order = np.argsort(x, kind="stable")
        rep[order[1:]] = x[order[1:]] == x[order[:-1]]
    return rep


def _match(grid: _Grid, pieces, tally: _Tally, outside: str, unseen: str, keep: bool = False):
    """Tally ids off the grid (as `outside`), repeated ids, and grid ids never seen (as `unseen`).

    pieces: iterable of (keys, values). Returns, if `keep`, the values by grid position (NaN where
    unseen); otherwise a scratch array.
    """
    seen, values = np.zeros(grid.size, bool), np.full(grid.size if keep else 1, np.nan)
    for keys, val in pieces:
        flat, inside = grid.locate(keys)
        tally.add(outside, int((~inside).sum()), _ids(keys[~inside][:EXAMPLES]))
        flat, keys = flat[inside], keys[inside]
        again = seen[flat] | _repeats(flat)
        tally.add("duplicated ids", int(again.sum()), _ids(keys[again][:EXAMPLES]))
        seen[flat] = True
        if keep:
            values[flat] = val[inside]
    if tally.bad_keys:   # an id on a bad line is reported there: missing, here, are the others
        flat, inside = grid.locate(np.concatenate(tally.bad_keys))
        seen[flat[inside]] = True
        unseen += " besides those on the bad lines above"
    missing = np.flatnonzero(~seen)
    tally.add(unseen, len(missing), _ids(grid.keys(missing[:EXAMPLES])))
    return values


def _grid_of(keys: list[np.ndarray], name: Path) -> _Grid:
    """The pages a sample submission covers, from its keys; each page must be a full rectangle of ids."""
    keys = np.concatenate(keys or [np.empty(0, np.int64)])
    if not (keys[1:] > keys[:-1]).all():      # the sample is sorted already; np.unique hashes, slowly
        keys = np.sort(keys)
        keys = keys[np.diff(keys, prepend=-1) != 0]
    if not len(keys):
        raise SubmissionError(f"{name}: holds no ids, so it is not a sample submission to check against")
    starts = np.flatnonzero(np.diff(keys >> 2 * _BITS, prepend=-1))
    full, size = np.ones(len(starts), bool), []
    for part in (keys & _MASK, keys >> _BITS & _MASK):     # rows, then columns: one temporary at a time
        size.append(np.maximum.reduceat(part, starts))
        full &= np.minimum.reduceat(part, starts) >= 1
    full &= np.diff(starts, append=len(keys)) == size[0] * size[1]
    images = keys[starts] >> 2 * _BITS
    if not full.all():
        raise SubmissionError(f"{name}: the ids of page {images[~full][0]} do not fill a rectangle; "
                              "cannot check against it")
    return _Grid(list(zip(images.tolist(), size[0].tolist(), size[1].tolist())))


# ---------------------------------------------------------------- validating

def _read(path: Path, tally: _Tally) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check the header and parse every data line of a submission into (keys, values) pieces."""
    try:
        with _open_csv(path) as f:
            line = _first_line(f, path)
            # Excel's "CSV UTF-8" starts with a BOM and R's write.csv quotes the names; both read as
            # id,value, as quoted ids below the header read as ids (_unquote)
            header = line.rstrip(b"\r\n").removeprefix(codecs.BOM_UTF8)
            if _unquote(header) != HEADER.encode():
                index = _unquote(header) == b"," + HEADER.encode()   # pandas' to_csv with the index
                hint = " (a DataFrame's index was written: to_csv(..., index=False))" if index else ""
                tally.note(f"header is {header.decode()[:40]!r}; want {HEADER!r}{hint}")
            return list(_rows(f, tally))
    except FileNotFoundError:
        raise SubmissionError(f"{path}: no such file") from None
    except _READ_ERRORS as e:
        raise SubmissionError(f"{path}: cannot read it as a CSV ({e})") from None


def _first_line(f, path: Path) -> bytes:
    """The header line of stream f; SubmissionError for binary data, which would otherwise read as an
    escaped "header" and thousands of bad lines, or as ids that all differ from the sample's."""
    line = f.readline()
    if _is_binary(line):
        raise SubmissionError(f"{path}: not a text CSV but binary data{_binary_kind(path, line)}")
    return line


def _is_binary(line: bytes) -> bool:
    """True for a first line no text CSV has: a NUL byte (binary, UTF-16) or bytes that are not UTF-8."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return b"\0" in line


def _binary_kind(path: Path, line: bytes) -> str:
    """The fix for a compressed CSV named .csv: the name picks how it is read."""
    kind = "zip" if line.startswith(b"PK\x03\x04") else "gz" if line.startswith(b"\x1f\x8b") else None
    if kind is None or path.suffix.lower() != ".csv":
        return ""
    return f" ({kind} data: name it {path.name}.{kind})"


def _truth_pages(truth: Path) -> list[tuple[int, np.ndarray]]:
    """(image, clean page) for the PNGs of a folder, sorted by image id."""
    pages = []
    for path in list_images(truth):
        if not is_page_id(path.stem):
            raise DataError(f"{path}: truth pages must be named by their page number, like 12.png")
        pages.append((int(path.stem), load_page(path)))
    return sorted(pages, key=lambda p: p[0])


def _score(pages: list[tuple[int, np.ndarray]], pieces) -> float | None:
    """Pooled RMSE over every pixel of the truth pages; None when a pixel has no finite value."""
    grid = _Grid([(i, *t.shape) for i, t in pages])
    values = _match(grid, pieces, _Tally(), "off the truth pages", "missing", keep=True)
    if not np.isfinite(values).all():
        return None
    return pooled_rmse((values[o:o + t.size].reshape(t.shape[1], t.shape[0]).T, t)
                       for (_, t), o in zip(pages, grid.offsets))


def _check_values(pieces, tally: _Tally) -> None:
    for keys, val in pieces:
        bad = ~np.isfinite(val)
        tally.add("NaN, inf or empty values", int(bad.sum()),
                  [f"{i}={v}" for i, v in zip(_ids(keys[bad][:EXAMPLES]), val[bad])])
        out = np.isfinite(val) & ((val < 0) | (val > 1))
        tally.add("values outside [0, 1]", int(out.sum()),
                  [f"{i}={float(v)!r}" for i, v in zip(_ids(keys[out][:EXAMPLES]), val[out])])   # 1.0000001


def validate_submission(path: Path, sample: Path | None = None,
                        truth: Path | None = None) -> ValidationReport:
    """Check a submission as Kaggle would, and score it when the clean pages are at hand.

    Args:
        path: plain, .zip or .gz CSV.
        sample: the sample submission; ids must match its ids exactly.
        truth: folder of clean pages `<image>.png`; without `sample`, ids must cover exactly these
            pages. The RMSE pools the squared errors of all their pixels.
    Returns: a ValidationReport; unreadable files are problems, not exceptions.
    """
    path, tally, rows = Path(path), _Tally(), 0
    try:
        pieces = _read(path, tally)
        rows = sum(len(k) for k, _ in pieces) + sum(tally.found.get(kind, [0])[0]
                                                    for kind in (MALFORMED, NON_NUMERIC))
        _check_values(pieces, tally)
        pages = _truth_pages(Path(truth)) if truth is not None else None
        if sample is not None:
            same, its = Path(sample).resolve() == path.resolve(), _Tally()
            ref = pieces if same else _read(Path(sample), its)
            if its.found:   # the ids of a file that is no sample submission say nothing
                raise SubmissionError(f"{sample}: not a sample submission ({'; '.join(its.lines())})")
            grid = _grid_of([k for k, _ in ref], Path(sample))
            del ref
        else:
            grid = _Grid([(i, *t.shape) for i, t in pages]) if pages is not None else None
    except (SubmissionError, DataError) as e:
        return ValidationReport(False, rows, tally.lines() + [str(e)])
    if grid is not None:
        _match(grid, pieces, tally, EXTRA_IDS, MISSING_IDS)
        zero = sum(int(((k & _MASK == 0) | (k >> _BITS & _MASK == 0)).sum()) for k, _ in pieces)
        if zero:   # counted among the extra ids above: say why
            tally.note(f"{zero:,} ids have row or col 0: ids are 1-based (page 1's top-left pixel is 1_1_1)")
    else:
        keys = np.concatenate([k for k, _ in pieces] or [np.empty(0, np.int64)])
        again = _repeats(keys)
        tally.add("duplicated ids", int(again.sum()), _ids(keys[again][:EXAMPLES]))
        zero = (keys & _MASK == 0) | (keys >> _BITS & _MASK == 0)
        tally.add("ids with row or col 0 (ids are 1-based)", int(zero.sum()), _ids(keys[zero][:EXAMPLES]))
    if not rows:
        tally.note("no rows: a submission holds one row per pixel of the test pages")
    if pages is not None and sample is None and MISSING_IDS in tally.found:   # a part of --truth's pages
        covered = set(np.unique(np.concatenate([k >> 2 * _BITS for k, _ in pieces] or [[]])).tolist())
        absent = [str(i) for i, _ in pages if i not in covered]
        if absent:
            tally.note(f"{len(absent)} of the {len(pages)} pages in {truth} have no row at all ("
                       f"{listed(absent, EXAMPLES)}): to score the pages the file covers, pass "
                       f"--truth a folder of those pages alone")
    rmse = _score(pages, pieces) if pages is not None else None
    differ = any(kind.startswith((EXTRA_IDS, MISSING_IDS)) for kind in tally.found)
    return ValidationReport(not tally.found, rows, tally.lines(), rmse, differ, grid is not None)


def check_against_sample(written: dict[str, tuple[int, int]], sample: Path) -> None:
    """Stream the sample's ids through the grid of written ids (bounded memory, no id strings)."""
    numeric = {int(p): hw for p, hw in written.items() if is_page_id(p)}
    grid, tally = _Grid([(i, h, w) for i, (h, w) in numeric.items()]), _Tally()
    # the sample's ids are matched against the grid of the written ones: "outside" it means missing
    extra = f"{EXTRA_IDS} (written, not in the sample)"
    missing = f"{MISSING_IDS} (in the sample, not written)"
    for p in written.keys() - {str(i) for i in numeric}:
        tally.add(extra, written[p][0] * written[p][1], [f"{p}_1_1"])
    try:
        with _open_csv(sample) as f:
            _first_line(f, sample)
            _match(grid, _rows(f, tally), tally, missing, extra)
    except _READ_ERRORS as e:
        raise SubmissionError(f"{sample}: cannot read the sample submission ({e})") from None
    if tally.found:
        raise SubmissionError(f"ids differ from {sample}:\n  " + "\n  ".join(tally.lines()))
