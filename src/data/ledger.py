"""What an output folder already holds: each cleaned page, the source it came from, and how it was cleaned.

`python -m src.denoise` keeps it in OUT/denoise.jsonl, so that a run stopped halfway picks up where it
stopped: a page is cleaned again only if its file is gone, its source changed (size or modification
time), or the model (`weights_digest`) or a setting that shapes the result differs.

One JSON line is appended per page (not the whole record rewritten: that grows with the square of a
folder's pages, 2 minutes for 5,000). A page's name is claimed on a line of its own before its file is
written, so that a run stopped between the two still knows the file as its own. A stop mid-line leaves
a last line without its newline, which is dropped when the record is next read. Before a run adds its
first line it rewrites the record, atomically, to one line per page where it holds more, so that re-runs
do not make it grow.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import json
import os
from pathlib import Path
from typing import Any

from src.common.errors import DataError
from src.common.files import atomic_write

LEDGER = "denoise.jsonl"


def source_id(path: Path) -> list:
    """The source file as the ledger knows it: where it is, its size and when it last changed."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def read_record(path: Path) -> tuple[str, set[str], dict[str, dict]]:
    """(the record's text, every name it claims, name -> {"source", "settings"} of the pages written);
    DataError naming the file when a line is not a page's record (blank lines are passed over)."""
    names: set[str] = set()
    pages: dict[str, dict] = {}
    try:
        text = path.read_text()
        for number, line in enumerate(text.split("\n")[:-1], 1):   # the last: "", or a line cut short
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                name = entry["page"]
                if not isinstance(name, str) or not name:
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                raise ValueError(f"line {number} is not a page's record") from None
            names.add(name)
            if "source" in entry:
                pages[name] = {"source": entry["source"], "settings": entry.get("settings")}
            else:
                pages.pop(name, None)
        return text, names, pages
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e}); it lists the pages this command wrote in {path.parent}, "
                        f"so that no other file there is replaced: move the pages elsewhere and delete it, "
                        f"or name another --out") from None


def recorded_names(folder: Path) -> set[str]:
    """The files a folder holds as `denoise` wrote them there (its record's names; none without one)."""
    path = Path(folder) / LEDGER
    return read_record(path)[1] if path.is_file() else set()


class Ledger:
    """OUT/denoise.jsonl: lines {"page": name} (claimed: the command writes that file) and {"page": name,
    "source": source_id, "settings": ...} (written), the last line of a name counting.

    It is also what tells the pages the command wrote from the user's own files beside them, which are
    never replaced: an unreadable ledger is a DataError, not a fresh start.
    """

    def __init__(self, out: Path, settings: dict[str, Any]):
        self.path = Path(out) / LEDGER
        self.settings = settings
        self.pages: dict[str, dict] = {}     # name -> {"source", "settings"} of the pages written
        self.names: set[str] = set()         # every name the command claimed in this folder
        self._compact = None                 # the record, one line a page, to write before the next line
        if self.path.exists():
            text, self.names, self.pages = read_record(self.path)
            compact = "".join(self._line(name, self.pages.get(name)) for name in sorted(self.names))
            self._compact = compact if text != compact else None
        self.earlier: dict[str | None, list[str]] = {}   # source path -> names earlier runs cleaned from it
        for name, source in self.sources().items():
            self.earlier.setdefault(source, []).append(name)

    def sources(self) -> dict[str, str | None]:
        """Each name the command claimed: the path of the source it was cleaned from, None if unknown (its
        file not written, or a stop before its record)."""
        found = {}
        for name in self.names:
            source = (self.pages.get(name) or {}).get("source")
            found[name] = source[0] if isinstance(source, list) and source else None
        return found

    def leftovers(self, scan) -> list[str]:
        """The files in OUT cleaned from `scan`'s path that it no longer gives (a TIFF or PDF now shorter)."""
        outputs = set(scan.output_names())   # by `earlier`: a lookup per scan, not a pass over the record
        return sorted(name for name in self.earlier.get(str(scan.path.resolve()), [])
                      if name not in outputs and (self.path.parent / name).exists())

    @staticmethod
    def _line(name: str, entry: dict | None) -> str:
        return json.dumps({"page": name, **(entry or {})}) + "\n"

    def _append(self, line: str) -> None:
        if self._compact is not None:   # not when opened: a run writing nothing leaves the folder as it was
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(self._compact))
            self._compact = None
        try:
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise DataError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _entry(self, source: Path, extra: dict | None) -> dict:
        return {"source": source_id(source), "settings": {**self.settings, **(extra or {})}}

    def done(self, name: str, source: Path, extra: dict | None = None) -> bool:
        """Whether OUT/name holds `source` cleaned with these settings (and `extra`, e.g. a PDF's dpi)."""
        return (self.path.parent / name).exists() and self.pages.get(name) == self._entry(source, extra)

    def wrote(self, path: Path) -> bool:
        """Whether `path` is a page or PDF this ledger's folder holds from an earlier run."""
        return path.name in self.names and path.resolve().parent == self.path.parent.resolve()

    @contextmanager
    def writing(self, name: str, source: Path, extra: dict | None = None) -> Iterator[None]:
        """Around writing OUT/name: claims the name first (once per folder), then, if the body returns,
        records the file as `source` cleaned with these settings (and `extra`)."""
        if name not in self.names:
            self._append(self._line(name, None))
            self.names.add(name)
        yield
        entry = self._entry(source, extra)
        self._append(self._line(name, entry))
        self.pages[name] = entry
