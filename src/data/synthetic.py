"""A generated, competition-shaped dataset: the embedded default when no real data is present.

Clean pages are pseudo-text drawn with OpenCV's built-in fonts, black on white. Noisy pages put the
same pixels on a dirty background (stains, folds, wrinkles, watermarks, ...) without moving any
pixel, so noisy and clean stay aligned like the competition's pairs. As in the competition, each text
lies on several backgrounds (training texts on 2-4 pages, test texts on up to 4, none shared), so
`make_submission`'s consensus has something to do. Everything is NumPy + OpenCV
and takes a few milliseconds per page, so tests can build a dataset on the fly.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from src.common.errors import DataError
from src.common.files import atomic_write
from src.data.competition import (CLEAN, DEFAULT_DATA_DIR, PAGE_SIZES, SAMPLE, SYNTHETIC_DIR, TEST, TRAIN,
                                  CompetitionData, has_competition_data, prepare_data)
from src.data.pages import save_page

log = logging.getLogger(__name__)

MARKER = ".synthetic"
FORMAT = "texts repeat\n"    # the marker's content: a dataset of an older format is made again
TRAIN_TEXT_PAGES, TEST_TEXT_PAGES = (2, 4), (4, 4)   # pages per text, as in the 115 pairs and the 72 tests
(WIDTH,), HEIGHTS = {w for _, w in PAGE_SIZES}, tuple(sorted(h for h, _ in PAGE_SIZES))
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)
BOLD_FONTS = (cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)
VOWELS, CONSONANTS = "aeiouy", "bcdfghklmnprstvw"


# ---------------------------------------------------------------- clean pages

def pseudo_word(rng: np.random.Generator) -> str:
    """A pronounceable lowercase non-word, 1-12 letters, so no real vocabulary is needed."""
    n = int(np.clip(rng.gamma(3.0, 1.6), 1, 12))   # mostly 2-8 letters, as in English
    start = int(rng.integers(2))
    return "".join(rng.choice(list(VOWELS if (i + start) % 2 else CONSONANTS)) for i in range(n))


def glyph_height(font: int) -> int:
    """Inked px height of "H" at scale 1, measured: OpenCV 4 and 5 draw different fonts and boxes."""
    img = np.zeros((120, 120), np.uint8)
    rows = np.flatnonzero(cv2.putText(img, "H", (10, 100), font, 1.0, 255, 1, cv2.LINE_AA).max(1))
    return int(rows[-1] - rows[0] + 1)


def render_clean_page(rng: np.random.Generator, height: int, width: int = WIDTH) -> np.ndarray:
    """Paragraphs of pseudo-words, antialiased black on white.

    Returns: uint8 (height, width); the paper is exactly 255, text strokes go down to ~0.
    """
    page = np.full((height, width), 255, np.uint8)
    font = int(rng.choice(BOLD_FONTS if rng.random() < 0.2 else FONTS))   # real pages are mostly regular
    font |= cv2.FONT_ITALIC if rng.random() < 0.3 else 0
    cap = rng.uniform(11.5, 15.5)                    # cap height in px, like the real scans
    scale, pitch, left = (cap / glyph_height(font), int(cap * rng.uniform(1.65, 2.05)),
                          int(rng.integers(2, 40)))
    # most real pages are crops whose lines run past the right edge
    right = width + int(rng.integers(0, 60)) if rng.random() < 0.7 else width - int(rng.integers(5, 40))
    y, indent, sentence_start = int(cap + rng.integers(2, 16)), 30, True
    while y < height + pitch // 2:
        x0, words = left + indent, []
        while cv2.getTextSize(" ".join(words), font, scale, 1)[0][0] <= right - x0:
            words.append(pseudo_word(rng).capitalize() if sentence_start else pseudo_word(rng))
            sentence_start = rng.random() < 0.12
            words[-1] += "." if sentence_start else "," if rng.random() < 0.08 else ""
        words.pop()                                  # the word that overflowed
        end_paragraph = not indent and rng.random() < 0.1
        if end_paragraph:                            # a paragraph's last line is short
            words = words[: max(1, int(len(words) * rng.uniform(0.2, 0.8)))]
        cv2.putText(page, " ".join(words), (x0, y), font, scale, 0, 1, cv2.LINE_AA)
        indent = int(rng.integers(15, 40)) if end_paragraph else 0
        y += pitch
    return page


# ---------------------------------------------------------------- backgrounds
# Each family returns an additive change to the paper level, float32 (h, w), roughly in [-0.5, 0.2].

def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Gaussian noise smoothed to blobs about `cell` px across, unit std, float32 (h, w)."""
    small = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3)).astype(np.float32)
    big = cv2.resize(small, (int(small.shape[1] * cell), int(small.shape[0] * cell)),
                     interpolation=cv2.INTER_CUBIC)[:h, :w]
    return (big - big.mean()) / (big.std() + 1e-6)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def coffee_stains(rng, h, w):
    """Curling stroke-shaped stains and rings with darker rims, like dried coffee."""
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.6:                      # a swirl: a random walk with smooth turns
            turn = np.cumsum(rng.normal(0, 0.25, 40))
            pts = np.cumsum(np.stack([np.cos(turn), np.sin(turn)], 1) * rng.uniform(8, 16), 0)
            pts += rng.uniform([0, 0], [w, h])
            cv2.polylines(mask, [pts.astype(np.int32)], False, 1.0, int(rng.integers(12, 40)), cv2.LINE_AA)
        else:
            center, axes = rng.integers(0, [w, h]).tolist(), rng.integers(30, 120, 2).tolist()
            cv2.ellipse(mask, center, axes, rng.uniform(0, 180), 0, 360, 1.0, int(rng.integers(6, 20)))
    mask = _blur(mask, rng.uniform(1.5, 4))
    rim = np.clip(4 * mask * (1 - mask), 0, 1)      # peaks where the stain's edge dried
    blotch = 1 + 0.3 * smooth_noise(rng, h, w, 25)
    return -(rng.uniform(0.2, 0.45) * mask + rng.uniform(0.05, 0.15) * rim) * blotch


def folds(rng, h, w):
    """Straight fold lines: a bright and a dark band either side of a crease, soft edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, np.pi)
        d = (xx - rng.uniform(0, w)) * np.cos(a) + (yy - rng.uniform(0, h)) * np.sin(a)
        s = rng.uniform(3, 15)
        out += rng.uniform(0.15, 0.35) * (d / s) * np.exp(-(d / s) ** 2)
        out -= rng.uniform(0.03, 0.12) * np.exp(-(d / 1.5) ** 2)    # the crease itself
    return out


def wrinkles(rng, h, w):
    """Crumpled paper: short creases, each a step in shading that fades out along its length.

    Drawn at half resolution (a quarter of the cost); creases stay about 2 px sharp.
    """
    hh, hw = (h + 1) // 2, (w + 1) // 2
    yy, xx = np.mgrid[0:hh, 0:hw].astype(np.float32)
    out = 0.03 * smooth_noise(rng, hh, hw, 20)
    for _ in range(int(rng.integers(12, 24))):
        a, (cx, cy) = rng.uniform(0, np.pi), rng.uniform([0, 0], [hw, hh])
        across = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
        along = (cx - xx) * np.sin(a) + (yy - cy) * np.cos(a)
        fade = np.exp(-(along / rng.uniform(30, 120)) ** 2 - (across / 90) ** 2)
        out += fade * (rng.uniform(-0.09, 0.09) * np.tanh(across / rng.uniform(0.4, 1.5))
                       + rng.uniform(0.0, 0.1) * np.exp(-4 * across ** 2))    # the ridge catches light
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def watermark(rng, h, w):
    """A faint word repeated on a tilted grid, as printed stationery or a stamp."""
    layer = np.zeros((h, w), np.uint8)                # putText draws on 8-bit images only
    text = pseudo_word(rng).upper() + " " + pseudo_word(rng).upper()
    font, scale = int(rng.choice(FONTS)), rng.uniform(0.8, 1.6)
    dx, dy = int(rng.integers(120, 260)), int(rng.integers(50, 110))
    for row, y in enumerate(range(-h // 2, h + h // 2, dy)):
        for x in range(-w // 2 - (row % 2) * dx // 2, w + w // 2, dx):
            cv2.putText(layer, text, (x, y), font, scale, 255, 2, cv2.LINE_AA)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-40, 40), 1.0)
    layer = cv2.warpAffine(layer, rot, (w, h))      # only the background layer turns, never the text
    return -rng.uniform(0.08, 0.2) / 255 * _blur(layer.astype(np.float32), 1.0)


def blotches(rng, h, w):
    """Large soft water or dirt marks: uneven darkening with blurred borders."""
    n = smooth_noise(rng, h, w, rng.uniform(50, 120))
    return -rng.uniform(0.08, 0.22) / (1 + np.exp(-3 * (n - rng.uniform(0.0, 1.0))))


def edge_shadow(rng, h, w):
    """The scanner lid's shadow: darkening that decays away from one page edge."""
    d = [np.arange(h)[:, None], np.arange(h)[::-1, None],
         np.arange(w), np.arange(w)[::-1]][int(rng.integers(4))]
    shadow = -rng.uniform(0.15, 0.4) * np.exp(-d / rng.uniform(15, 60))
    return np.broadcast_to(shadow, (h, w)).astype(np.float32)


def speckle(rng, h, w):
    """Dust and toner specks: small dark dots of varied size."""
    layer = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(30, 200))):
        cv2.circle(layer, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(1, 3)),
                   rng.uniform(0.3, 1.0), -1, cv2.LINE_AA)
    return -rng.uniform(0.3, 0.6) * _blur(layer, 0.7)


def fibres(rng, h, w):
    """Paper texture: noise stretched along one direction, like pulp fibres."""
    sx, sy = rng.permutation([rng.uniform(2, 5), 1.0])
    n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=sx, sigmaY=sy)
    return rng.uniform(0.015, 0.04) * n / (n.std() + 1e-6)


FAMILIES = (coffee_stains, folds, wrinkles, watermark, blotches, edge_shadow, speckle, fibres)


def lighting(rng, h, w):
    """Uneven illumination: a linear ramp in a random direction plus a soft vignette, in ~[0.8, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx / w) * np.cos(a) + (yy / h) * np.sin(a)
    ramp = (ramp - ramp.min()) * rng.uniform(0, 0.1)   # never brighter than 1: real scans rarely clip
    vignette = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * rng.uniform(0, 0.15)
    return 1 - ramp - vignette


def degrade(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put a clean page on dirty paper without moving any pixel.

    Args: clean, uint8 (H, W), white paper 255, black text.
    Returns: uint8 (H, W), mean about 0.7-0.9 of white, RMSE vs clean about 0.1-0.2 (in [0, 1] units).
    """
    h, w = clean.shape
    ink = _blur(1 - clean.astype(np.float32) / 255, rng.uniform(0.3, 0.8))  # a worn, slightly soft print
    paper = rng.uniform(0.88, 0.96) * lighting(rng, h, w)
    for i in rng.choice(len(FAMILIES), size=int(rng.integers(1, 3)), replace=False):
        paper += FAMILIES[i](rng, h, w)
    paper += rng.uniform(0.005, 0.02) * _blur(rng.standard_normal((h, w)).astype(np.float32), 0.8)
    noisy = paper * (1 - rng.uniform(0.7, 0.9) * ink)   # ink absorbs a share of the paper's light
    noisy += rng.normal(0, rng.uniform(0.004, 0.015), (h, w)).astype(np.float32)
    return np.clip(noisy * 255 + 0.5, 0, 255).astype(np.uint8)


def make_pair(seed: int, page_id: int, height: int, width: int = WIDTH,
              text: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) uint8 (height, width): text `text` (default: the page's own) on the page's background.

    The text and each page's background have their own random streams, so pages of one text share
    their clean page exactly and differ in their dirt.
    """
    clean = render_clean_page(np.random.default_rng([seed, page_id if text is None else text]), height, width)
    return degrade(clean, np.random.default_rng([seed, page_id, 1])), clean


# ---------------------------------------------------------------- writing

def sample_submission_text(pages: list[tuple[int, int, int]]) -> str:
    """The sample CSV for (page_id, height, width) pages, in the real file's order.

    The real sampleSubmission.csv runs page by page in numeric id order and, within a page, column
    by column with the row varying fastest: 1_1_1, 1_2_1, ..., 1_258_1, 1_1_2, ...
    """
    chunks = ["id,value\n"]
    for pid, h, w in sorted(pages):
        heads = [f"{pid}_{r}_" for r in range(1, h + 1)]
        for c in range(1, w + 1):
            tail = f"{c},1\n"
            chunks.append(tail.join(heads) + tail)   # one C-level join per column: fast
    return "".join(chunks)


def group_sizes(n: int, pages: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """Sizes in pages[0]..pages[1] summing to n; when n cannot be split so, the last group is smaller."""
    low, high = pages
    sizes = []
    while n > 0:
        size = min(int(rng.integers(low, high + 1)), n)
        if 0 < n - size < low:                      # the rest would make too small a group
            size = n if n <= high else max(low, n - low)
        sizes.append(size)
        n -= size
    return sizes


def page_plan(n_train: int, n_test: int,
              seed: int) -> tuple[list[int], list[int], dict[int, int], dict[int, int]]:
    """(train ids, test ids, height by id, text by id): ids 1..n_train+n_test shuffled between the two,
    like the real ones (train 2, 3, 5, ..., test 1, 4, ...). Pages are dealt into texts of
    TRAIN_TEXT_PAGES or TEST_TEXT_PAGES pages, a text named by its first page's id; a text's pages
    are all 258 or all 420 px tall."""
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in rng.permutation(np.arange(1, n_train + n_test + 1))]
    texts: dict[int, int] = {}
    for part, pages in ((ids[n_test:], TRAIN_TEXT_PAGES), (ids[:n_test], TEST_TEXT_PAGES)):
        start = 0
        for size in group_sizes(len(part), pages, rng):
            group = part[start:start + size]
            texts.update(dict.fromkeys(group, min(group)))
            start += size
    heights = {i: int(rng.choice(HEIGHTS)) for i in ids}
    return sorted(ids[n_test:]), sorted(ids[:n_test]), {i: heights[texts[i]] for i in ids}, texts


def _is_complete(root: Path, n_train: int, n_test: int) -> bool:
    counts = [len(list((root / d).glob("*.png"))) for d in (TRAIN, CLEAN, TEST)]
    return ((root / MARKER).is_file() and (root / MARKER).read_text() == FORMAT and (root / SAMPLE).is_file()
            and counts == [n_train, n_train, n_test])


def make_synthetic_competition(root: Path, n_train: int = 24, n_test: int = 6, seed: int = 0) -> Path:
    """Write a small competition-shaped dataset into root and return root.

    Layout: root/train/<id>.png and root/train_cleaned/<id>.png (same names and sizes),
    root/test/<id>.png, root/sampleSubmission.csv and a marker root/.synthetic holding FORMAT, written
    last so that an interrupted run is regenerated. Deterministic for a seed; a complete dataset with the
    same counts and format is left untouched. Raises DataError rather than overwrite a real dataset.
    """
    root = Path(root)
    if _is_complete(root, n_train, n_test):
        return root
    partial = root / f"{MARKER}.partial"
    if (root / TRAIN).is_dir() and any((root / TRAIN).glob("*.png")) \
            and not (root / MARKER).exists() and not partial.exists():
        raise DataError(f"{root}: holds pages that are not synthetic; refusing to overwrite them "
                        f"(pick another folder, or delete {root / TRAIN} if it is a stale copy)")
    log.info("writing a synthetic dataset (%d train, %d test pages) to %s", n_train, n_test, root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    partial.write_text(FORMAT)
    for d in (TRAIN, CLEAN, TEST):
        (root / d).mkdir(exist_ok=True)
        for old in (root / d).glob("*.png"):       # pages of an earlier size of dataset
            old.unlink()
    train_ids, test_ids, heights, texts = page_plan(n_train, n_test, seed)
    for pid in train_ids:
        noisy, clean = make_pair(seed, pid, heights[pid], text=texts[pid])
        save_page(root / TRAIN / f"{pid}.png", noisy)
        save_page(root / CLEAN / f"{pid}.png", clean)
    for pid in test_ids:
        save_page(root / TEST / f"{pid}.png", make_pair(seed, pid, heights[pid], text=texts[pid])[0])
    pages = [(pid, heights[pid], WIDTH) for pid in test_ids]
    text = sample_submission_text(pages)
    atomic_write(root / SAMPLE, lambda tmp: tmp.write_text(text))
    os.replace(partial, root / MARKER)               # last: the dataset is complete
    return root


def prepare_or_synthesize(data_dir: Path = DEFAULT_DATA_DIR, work_dir: Path | None = None,
                          log=print) -> CompetitionData:
    """prepare_data, or, for the default folder holding no data, the embedded synthetic set.

    Only the default folder falls back: a folder the user named that holds nothing is an error.
    """
    data_dir = Path(data_dir)
    if has_competition_data(data_dir) or data_dir != DEFAULT_DATA_DIR:
        return prepare_data(data_dir, work_dir)
    from src.data.synthetic import make_synthetic_competition  # only needed on this path
    root = make_synthetic_competition(SYNTHETIC_DIR)
    log(f"NOTE: no competition data in {data_dir}/ - using the SYNTHETIC embedded default in {root}/. "
        f"Its scores say nothing about the competition; run `python -m src.download` for the real data.")
    return prepare_data(root)
