"""Scans cleaned into an output folder, page by page and file by file, as `python -m src.denoise` does."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import repeat
from pathlib import Path

import numpy as np

from src.common.errors import CheckpointError
from src.data.ledger import Ledger
from src.data.outline import cut_out, page_outline
from src.data.pages import save_page
from src.data.scans import Scan, read_pages, read_written, write_pdf
from src.inference.finish import finish
from src.inference.scale import clean_scan, describe_scale, solid_hint
from src.inference.tiles import non_finite


def page_cleaner(models, target: float, zoom: float, log: Callable[[str], None], *, scale: float | None,
                 tile: int, crop: bool = False, deskew: bool = False, bilevel: bool = False,
                 **predict) -> Callable[[np.ndarray, str], np.ndarray]:
    """clean(page, where): a scan's page as `denoise` cleans it (cut out of a photo with `crop`,
    `clean_scan`, then `finish`), its line logged (the cut, text size, scale, type left to the model,
    turn); CheckpointError naming `where` where the models predict NaN or inf, before anything is written.

    Args: models, target, zoom: as `load_denoisers` gives them; scale, tile: `clean_scan`'s (None, 0:
    measured, chosen); predict: the rest of `clean_scan`'s keyword arguments.
    """
    def clean(page: np.ndarray, where: str) -> np.ndarray:
        cut = ""
        if crop:
            corners = page_outline(page)
            page = page if corners is None else cut_out(page, corners)
            cut = ("no page's outline found, cleaned whole; " if corners is None else
                   f"page cut out of the photo, {page.shape[1]} x {page.shape[0]} px; ")
        cleaned, size, factor, lightened = clean_scan(models, page, target, zoom, scale=scale, tile=tile,
                                                      **predict)
        problem = non_finite(cleaned)
        cleaned, turned = (cleaned, "") if problem else finish(cleaned, deskew, bilevel)
        log(f"{where}: {cut}{describe_scale(size, target, factor, zoom)}"
            + (f" (--scale {scale})" if scale else "") + solid_hint(lightened) + turned)
        if problem:
            raise CheckpointError(f"{where}: {problem}; nothing written for this page")
        return cleaned
    return clean


def clean_file(scan: Scan, out: Path, ledger: Ledger, clean: Callable[[np.ndarray, str], np.ndarray],
               dpi: int | None, tally: Counter, log: Callable[[str], None],
               done: Callable[[], None]) -> list[str]:
    """Clean the pages of `scan` that `out` does not hold yet (as `ledger` says) into `out`, each at the
    resolution its scan records, and a PDF's pages into one PDF.

    Args: clean(page, "scan -> name"): the cleaned page; dpi: what PDF pages are rendered at (None: each
    at its scan's resolution, `scanned_dpi`); tally: counts "pages" cleaned and "kept" (cleaned before
    with the same model and settings); log: a line for the user; done: called after each page.
    Returns: why pages could not be read (each line names the file and page); the others are cleaned,
    and a PDF with such a page gets no PDF out (it would lack that page).
    """
    extra = dict(dpi=dpi) if scan.pdf else None
    for name in ledger.leftovers(scan):
        log(f"{out / name}: cleaned from an earlier {scan.path} with more pages; left as it is")
    # a scan cleaned whole before is not even read; one left halfway is read page by page
    todo = [n for n in scan.output_names() if not ledger.done(n, scan.path, extra)]
    problems = []
    for name, page in zip(scan.page_names(), read_pages(scan, dpi) if todo else repeat(None)):
        if name not in todo:
            tally["kept"] += 1
        elif page.problem:
            problems.append(page.problem)
        else:
            cleaned = clean(page.pixels, f"{scan.path} -> {name}")
            with ledger.writing(name, scan.path, extra):
                save_page(out / name, cleaned, page.dpi)
            tally["pages"] += 1
        done()
    if scan.pdf and problems:
        problems.append(f"{scan.path}: {out / scan.pdf_name} not written, as it would lack those pages")
    elif scan.pdf and todo:   # from the pages written: a long PDF is never held whole
        with ledger.writing(scan.pdf_name, scan.path, extra):
            write_pdf(out / scan.pdf_name, map(read_written, (out / n for n in scan.page_names())))
    return problems
