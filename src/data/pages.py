"""Page files: list a folder's pages in page order, read one as float32 in [0, 1], write 8-bit PNG."""
from __future__ import annotations

import io
import logging
from pathlib import Path
import struct

import cv2
import numpy as np

from src.common.errors import DataError
from src.common.files import atomic_write, case_clashes

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png",)


def page_sort_key(path: Path):
    """Numeric page ids sort as numbers (2 before 10), other names after them (a superscript two is a
    digit to str.isdigit, not to int); ties (01.png and 1.png, x.png and x.PNG) by file name, not by
    the order the disk lists them in."""
    stem = path.stem
    return (0, int(stem), "", path.name) if stem.isascii() and stem.isdigit() else (1, 0, stem, path.name)


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


def save_page(path: Path, page: np.ndarray, dpi: tuple[float, float] | None = None) -> None:
    """Write a page as an 8-bit grayscale PNG, atomically: uint8 as it is, floats in [0, 1] rounded
    (values outside clipped), so that load_page reads it back to within 1/510; bool (True: white) as a
    1-bit PNG, which load_page reads as 0 and 1. `dpi`, (x, y) dots per inch, is recorded in the file
    (what OCR and printing read the page's size from)."""
    path = Path(path)
    if page.ndim != 2:
        raise DataError(f"{path}: a page is (height, width) grayscale, not shape {page.shape}")
    bilevel = page.dtype == bool
    img = page if page.dtype == np.uint8 else np.rint(np.clip(page, 0, 1) * 255).astype(np.uint8)
    if dpi:   # OpenCV's PNG writer records no resolution; Pillow's, at OpenCV's fast compression level
        from PIL import Image

        data = io.BytesIO()
        img = Image.fromarray(img, "L")
        (img.convert("1") if bilevel else img).save(data, "PNG", dpi=dpi, compress_level=1)
        data = data.getvalue()
    else:
        data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_BILEVEL, int(bilevel)])[1].tobytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
