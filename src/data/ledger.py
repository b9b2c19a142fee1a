"""What an output folder already holds: each cleaned page, the source it came from, and how it was cleaned.

`python -m src.denoise` keeps it in OUT/denoise.json, rewritten atomically after every page, so that a run
stopped halfway picks up where it stopped: a page is cleaned again only if its file is gone, its source
changed (size or modification time), or the model (`weights_digest`) or a setting that shapes the result
differs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.common.errors import DataError
from src.common.files import atomic_write

LEDGER = "denoise.json"


def source_id(path: Path) -> list:
    """The source file as the ledger knows it: where it is, its size and when it last changed."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class Ledger:
    """OUT/denoise.json: output name -> {"source": source_id, "settings": ...}.

    It is also what tells the pages the command wrote from the user's own files beside them, which are
    never replaced: an unreadable ledger is a DataError, not a fresh start.
    """

    def __init__(self, out: Path, settings: dict[str, Any]):
        self.path = Path(out) / LEDGER
        self.settings = settings
        self.pages: dict[str, dict] = {}
        if self.path.exists():
            try:
                pages = json.loads(self.path.read_text())
                if not isinstance(pages, dict):
                    raise ValueError("not a JSON object")
                self.pages = pages
            except (OSError, ValueError) as e:
                raise DataError(f"{self.path}: unreadable ({e}); it lists the pages this command wrote in "
                                f"{out}, so that no other file there is replaced: move the pages elsewhere "
                                f"and delete it, or name another --out") from None

    def _entry(self, source: Path, extra: dict | None) -> dict:
        return {"source": source_id(source), "settings": {**self.settings, **(extra or {})}}

    def done(self, name: str, source: Path, extra: dict | None = None) -> bool:
        """Whether OUT/name holds `source` cleaned with these settings (and `extra`, e.g. a PDF's dpi)."""
        return (self.path.parent / name).exists() and self.pages.get(name) == self._entry(source, extra)

    def wrote(self, path: Path) -> bool:
        """Whether `path` is a page or PDF this ledger's folder holds from an earlier run."""
        return path.name in self.pages and path.resolve().parent == self.path.parent.resolve()

    def add(self, name: str, source: Path, extra: dict | None = None) -> None:
        """Record OUT/name, just written, as `source` cleaned with these settings."""
        self.pages[name] = self._entry(source, extra)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(json.dumps(self.pages, indent=1)))
