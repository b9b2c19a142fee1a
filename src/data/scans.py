"""Scans of any common format as pages, and cleaned pages back as a PDF.

PNG, JPEG, TIFF (every page), BMP, WebP, HEIC and AVIF are read with Pillow (HEIC through pillow-heif):
EXIF rotation applied, colour made grayscale, 16-bit and palette images scaled right, transparency laid on
white paper. PDF pages are rendered with PDFium at a chosen resolution. Every page comes out as (H, W)
float32 in [0, 1].
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
import io
import os
from pathlib import Path
import warnings

import numpy as np

from src.common.errors import DataError
from src.common.files import atomic_write, case_clashes
from src.common.wording import counted, listed
from src.data.ledger import LEDGER, recorded_names
from src.data.pages import page_sort_key

SCAN_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif",
                 ".avif", ".pdf")
FORMATS = "PNG, JPEG, TIFF, BMP, WebP, HEIC, AVIF or PDF"
DEFAULT_DPI = 200   # PDF pages are rendered so: A4 is 1654 x 2339 px, body text 20-30 px tall
# the lowest resolution a page is rendered at or recorded with: below it an image file's "dpi" is a
# writer's placeholder (Pillow writes TIFFs at 1 dpi by default), not a scan's
MIN_DPI = 18
MAX_DPI = 600   # a scanned PDF page is rendered at its image's resolution up to this (--dpi: any)
# Pillow modes wider than 8 bits, by the value of their white (16-bit PNGs and TIFFs open as I;16 or I)
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}


@dataclass(frozen=True)
class Scan:
    """One input file: its path, its page count, and whether it is a PDF (which also gets a PDF out)."""
    path: Path
    pages: int
    pdf: bool

    def page_names(self) -> list[str]:
        """The cleaned pages' file names: scan.png for a one-page image, letter-<k>.png (k from 1) for
        every page of a PDF and of a multi-page TIFF."""
        stem = self.path.stem
        if self.pages == 1 and not self.pdf:
            return [f"{stem}.png"]
        return [f"{stem}-{k}.png" for k in range(1, self.pages + 1)]

    @property
    def pdf_name(self) -> str:
        """The cleaned PDF's file name, for a PDF scan."""
        return f"{self.path.stem}.pdf"

    def output_names(self) -> list[str]:
        return self.page_names() + ([self.pdf_name] if self.pdf else [])


@dataclass(frozen=True)
class Page:
    """A page of a scan: (H, W) float32 in [0, 1] and its resolution, (x, y) dots per inch as the file
    records it (a PDF's: the one it is rendered at) or None; or, where it cannot be read, no pixels and
    why (naming the file and page)."""
    pixels: np.ndarray | None
    dpi: tuple[float, float] | None = None
    problem: str = ""


def find_scans(inputs: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]], list[str]]:
    """(files to read, [(input, why it is skipped)], notes on what folders hold beside their scans): files
    as named, and each folder's files whose suffix is one of SCAN_SUFFIXES, in page order; not its
    subfolders, hidden files, nor the pages `denoise` cleaned into it (its record lists them)."""
    files, skipped, notes = [], [], []
    for path in map(Path, inputs):
        if path.is_dir():
            cleaned = recorded_names(path)
            with os.scandir(path) as listing:   # its entries know their kind: no stat per file
                kinds = {Path(e.path): "file" if e.is_file() else "folder" if e.is_dir() else ""
                         for e in listing if not e.name.startswith(".") and e.name != LEDGER}
            files_here = [p for p, kind in kinds.items() if kind == "file"]
            found = sorted((p for p in files_here if p.suffix.lower() in SCAN_SUFFIXES
                            and p.name not in cleaned), key=page_sort_key)
            other = sorted(p.name for p in files_here if p.suffix.lower() not in SCAN_SUFFIXES)
            folders = sorted(p.name for p, kind in kinds.items() if kind == "folder")
            ours = sum(p.name in cleaned for p in kinds)
            left = [f"{counted(len(other), 'file')} of other kinds ({listed(other)})" if other else "",
                    f"{counted(len(folders), 'subfolder')} ({listed(folders)})" if folders else "",
                    f"{counted(ours, 'file')} cleaned into it before ({LEDGER} there)" if ours else ""]
            if any(left):
                notes.append(f"{path}: left out {', '.join(filter(None, left))}")
            files += found
            if not found:
                skipped.append((path, f"no {FORMATS} files in this folder"))
        elif path.is_file():
            files.append(path)
        else:
            skipped.append((path, "no such file or folder"))
    unique: dict[Path, Path] = {}
    for path in files:   # a file named twice (itself and its folder) is cleaned once
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), skipped, notes


def scanned_dpi(page) -> int:
    """What a PDF page is rendered at by default: the resolution of its largest image where that image
    covers at least half of the page (a scanned page: cleaned at the scan's own resolution, within MIN_DPI
    and MAX_DPI), else DEFAULT_DPI (a page of text and drawings, which has no resolution of its own)."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    best = None
    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, bottom, right, top = image.get_bounds()
        area, (w, h) = (right - left) * (top - bottom), image.get_px_size()
        if area >= width * height / 2 and (best is None or area > best[0]):
            best = area, 72 * (w * h / area) ** 0.5   # dots per inch, whatever way the image is turned
    return DEFAULT_DPI if best is None else int(round(min(max(best[1], MIN_DPI), MAX_DPI)))


def is_pdf(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"%PDF-" in f.read(1024)   # the header may follow up to 1 KB of other bytes


def open_scan(path: Path) -> Scan:
    """The Scan of a file, its pages counted; DataError naming the file when it cannot be read."""
    path = Path(path)
    try:
        if is_pdf(path):
            with _pdf(path) as pdf:
                if not len(pdf):
                    raise DataError(f"{path}: a PDF without pages")
                return Scan(path, len(pdf), True)
        with _image(path) as img:
            return Scan(path, _frames(img), False)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def read_pages(scan: Scan, dpi: int | None = None) -> Iterator[Page]:
    """The scan's pages one at a time (a long PDF is never held whole), PDF pages rendered at `dpi`, or
    where it is None at `scanned_dpi`. A page that cannot be read comes as its problem, and the pages after
    it are still read; a file that cannot be opened raises DataError naming it."""
    if scan.pdf:
        from PIL import Image

        with _pdf(scan.path) as pdf:
            for k in range(len(pdf)):
                sheet = pdf[k]
                at = dpi or scanned_dpi(sheet)
                # the pixel count at which Pillow refuses an image file (a decompression bomb) bounds a
                # rendered page too: a poster-sized page at 200 dpi would take gigabytes
                width, height = (round(side * at / 72) for side in sheet.get_size())
                if width * height > 2 * Image.MAX_IMAGE_PIXELS:
                    most = int(at * (2 * Image.MAX_IMAGE_PIXELS / (width * height)) ** 0.5)
                    yield Page(None, problem=f"{scan.path}: page {k + 1} would be {width} x {height} px at "
                                             f"--dpi {at}, too large to clean safely; --dpi {most} or "
                                             f"lower renders it")
                    continue
                try:
                    # PDFium takes the ceiling of size x scale, and keeps sizes as float32: a hair under
                    # the scale, so that a 300 dpi scan 540 px wide is not rendered 541 px wide
                    bitmap = sheet.render(scale=at / 72 * (1 - 1e-6), grayscale=True)
                except Exception as e:   # PDFium raises its own PdfiumError
                    yield Page(None, problem=f"{scan.path}: page {k + 1} cannot be rendered ({e})")
                    continue
                pixels = bitmap.to_numpy().reshape(bitmap.height, bitmap.width).astype(np.float32) / 255
                yield Page(pixels, (at, at))
        return
    with _image(scan.path) as img:
        for k in range(_frames(img)):
            try:
                img.seek(k)
                yield Page(gray(img), _resolution(img))
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                where = f"page {k + 1}" if scan.pages > 1 else "not a readable image"
                yield Page(None, problem=f"{scan.path}: {where} ({e})")


def read_written(path: Path) -> Page:
    """A page `denoise` wrote (an 8-bit PNG, or a 1-bit one, read as bool), with the resolution it records."""
    with _image(path) as img:
        pixels = gray(img)
        return Page(pixels > 0.5 if img.mode == "1" else pixels, _resolution(img))


def _resolution(img) -> tuple[float, float] | None:
    """The (x, y) dots per inch an image file records for its current page, turned as `gray` turns the
    page; None when it records none, or none that can be a resolution."""
    from PIL import ExifTags

    try:
        x, y = (float(v) for v in img.info["dpi"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):   # a TIFF's 0/0 rational among them
        return None
    if not (MIN_DPI <= x < 1e5 and MIN_DPI <= y < 1e5):
        return None
    # a PNG keeps whole dots per metre, half a dot per metre off being 0.0127 dpi: 300 dpi comes back as
    # 299.9994 and 150 as 150.0124, which would make a page a pixel wider
    x, y = (round(v) if abs(v - round(v)) < 0.013 else v for v in (x, y))
    turned = img.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)   # a quarter turn
    return (y, x) if turned else (x, y)


def gray(img) -> np.ndarray:
    """A Pillow image upright (its EXIF orientation applied) as (H, W) float32 gray in [0, 1]: colour by
    luma (ITU-R 601, as OpenCV), 16-bit by its full range, transparent parts as white paper."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in WIDE_MODES:
        return np.clip(np.asarray(img, np.float32) / WIDE_MODES[img.mode], 0, 1)
    if img.has_transparency_data:   # else transparent paper, often stored black, would come out black
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
    return np.asarray(img.convert("L"), np.float32) / 255


def write_pdf(path: Path, pages: Iterable[Page]) -> None:
    """A PDF of the pages, one image each, losslessly compressed, atomically: 8-bit gray with Flate, black
    and white (bool pixels, True white) with CCITT G4, as fax and scanners store such pages.

    Args: pages: their pixels, (H, W) uint8, float in [0, 1] or bool, each filling a sheet of W x H px at
    the page's dpi (DEFAULT_DPI where it has none), so that a page rendered at a dpi keeps its paper size.
    """
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument.new()
    try:
        for page in pages:
            img, (x, y) = page.pixels, page.dpi or (DEFAULT_DPI, DEFAULT_DPI)
            if img.dtype == bool:   # PDFium writes no CCITT; Pillow does, one sheet, which PDFium copies over
                sheet = io.BytesIO()
                Image.fromarray(img).save(sheet, "PDF", dpi=(x, y))
                with pdfium.PdfDocument(sheet.getvalue()) as one:
                    pdf.import_pages(one)
                continue
            img = img if img.dtype == np.uint8 else np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
            sheet = pdf.new_page(img.shape[1] * 72 / x, img.shape[0] * 72 / y)
            picture = pdfium.PdfImage.new(pdf)
            picture.set_bitmap(pdfium.PdfBitmap.from_pil(Image.fromarray(img, "L")))
            picture.set_matrix(pdfium.PdfMatrix().scale(sheet.get_width(), sheet.get_height()))
            sheet.insert_obj(picture)
            sheet.gen_content()

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                pdf.save(f)
        atomic_write(Path(path), save)
    finally:
        pdf.close()


def check_outputs(scans: list[Scan], out: Path, written: Mapping[str, str | None] | None = None) -> None:
    """DataError unless every output name in `out` is distinct (whatever the disk's case rules), none is
    an input (two sources of one name, scan.jpg and scan.png, or --out holding the inputs), and none is
    a file already there that the command did not write from that source: `written` maps the names it
    wrote there before to the path of their source (None: unknown). A folder's own scan.png beside the
    scan.jpg being cleaned is never replaced, nor monday/scan.png's page by tuesday/scan.png's."""
    written = written or {}
    owner: dict[str, Path] = {}
    for scan in scans:
        for name in scan.output_names():
            first = owner.setdefault(name, scan.path)
            if first != scan.path:
                raise DataError(f"{first} and {scan.path} would both be cleaned to {out / name}; "
                                f"clean them into different --out folders, or rename one")
    for group in case_clashes(owner):
        raise DataError(f"{owner[group[0]]} and {owner[group[1]]} would be cleaned to {group[0]} and "
                        f"{group[1]}, one file on a disk blind to case; rename one")
    inputs = {scan.path.resolve() for scan in scans}
    theirs = []
    for name, source in owner.items():
        if (out / name).resolve() in inputs:
            raise DataError(f"--out {out}: {out / name} is an input, which cleaning {source} would "
                            f"overwrite; name another folder")
        if not (out / name).exists():
            continue
        if name not in written:
            theirs.append(name)
        elif written[name] not in (None, str(source.resolve())):
            raise DataError(f"--out {out}: {out / name} was cleaned from {written[name]}; cleaning {source} "
                            f"would replace it: name another folder, or move it")
    if theirs:
        raise DataError(f"--out {out}: cleaning would replace {counted(len(theirs), 'file')} this command "
                        f"did not write (its record, {LEDGER} there, does not list them): "
                        f"{listed([str(out / n) for n in theirs])}; move them, or name another folder")


def _frames(img) -> int:
    """Pages of an image file: every frame of a TIFF, the first only of other formats (an animated
    WebP, or a camera JPEG's preview frame, holds no further pages)."""
    return getattr(img, "n_frames", 1) if img.format == "TIFF" else 1


@cache
def _heif_opener() -> None:
    """HEIC (a phone camera's photos) through Pillow, which opens AVIF itself but not HEIC; pillow-heif
    applies the file's own rotation and resets its EXIF orientation, so that `gray` does not turn it twice."""
    import pillow_heif

    pillow_heif.register_heif_opener()


@contextmanager
def _image(path: Path):
    """Pillow's Image.open, its failures DataErrors naming the file."""
    from PIL import Image, UnidentifiedImageError

    _heif_opener()
    try:
        with warnings.catch_warnings():   # above Pillow's limit but within twice it: opened, as a scan may be
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (not a {FORMATS} file, or damaged)") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: too large to open safely ({e})") from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    with img:
        yield img


@contextmanager
def _pdf(path: Path):
    """pypdfium2's PdfDocument, its failures DataErrors naming the file."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:   # damaged, truncated, or locked by a password
        raise DataError(f"{path}: not a readable PDF ({e})") from None
    try:
        yield pdf
    finally:
        pdf.close()
