"""The text size of a page, and cleaning a page at the text size its model learnt.

A denoiser learns strokes and letters at the size its training pages show them. A page scanned at a
higher resolution shows it letters two or three times as large, which it does not clean: held-out
competition pages enlarged 3x came out worse than they went in (RMSE 0.21 against 0.16, docs/denoise.md).
`clean_at_scale` shrinks such a page until its text has a size the model learnt, cleans it, and brings
the result back to the page's own size. A model trained on enlarged patches as well (`--zoom`) learns the
larger text itself, and cleans such pages as they are: sharper than any resampling (docs/denoise.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from torch import nn

from src.common.errors import CheckpointError
from src.inference.tiles import predict_page, tile_for
from src.models.checkpoints import load_model

INK = 0.6             # a pixel darker than this share of its paper's brightness is ink
# ...or on a faded page, whose darkest ink (its DARKEST percentile) is FADED or lighter, below INK of the
# way from that ink to the paper: the page's contrast stretched until its ink is black. INK alone takes only
# the strokes' cores there, which are not the letters' height (competition pages squeezed into grey levels
# 150-250 read None, or 8.7 px enlarged 3x against 50.4). The darkest ink of competition pages is 0.2 at
# most, 0.35 shrunk to 0.5x. Only where that ink is FAINTEST or darker, and DISTINCT times as far below the
# paper's median as its 25th percentile: a blank page's grain is 3.5-4.8 times as far (enlarged or not),
# blurred text 2.2-4, and a blank JPEG's blocks 0.97 of its paper; stretched, they would read as text. Faded
# pages on stained paper can fall short (5.2-6: 9 of 115 noisy competition pages at 3x; docs/denoise.md).
DARKEST, FADED, FAINTEST, DISTINCT = 1, 0.4, 0.85, 6
MIN_COMPONENTS = 10   # fewer ink components than this: too little text to tell its size
# Letters are many: a size whose band holds under a tenth as many components as there are smaller ones is
# that of a few large shapes whose area outweighs the text (a watermark's strokes). Measured: at most 2 on
# the unseen-noise benchmark's 112 pages, 53 and 203 on its two watermarked pages that a few shapes misled.
OUTNUMBERED = 10
# Only the smaller ones over an eighth of that size count: the specks of grain, which a page scanned at 4-5x
# the competition's resolution shows by the thousand, would outnumber its letters
SMALLEST = 8
# Worn ink and a printer's banding cut letters across with blank rows 1-2 px tall, and the strips read as
# text a quarter to three quarters of its size. A page is enlarged only if its letters are still small with
# gaps of fewer rows than this filled in: measured, the unseen-noise benchmark's four such pages read
# 8.9-10.5 px so (their clean pages 9.8-10.2; as they are, 2.6-7.5), while competition pages shrunk to 0.5x
# read 0.85-1.06x what they read as they are, and all but 3 of 99 are still enlarged (docs/denoise.md).
BRIDGE = 3
# Lines of text lie further apart than their letters are tall: line pitch over text size is 2.1-2.4 on the
# competition's pages (at 1x to 4x) and 1.9 or more on the unseen-noise benchmark's, but 0.74-0.88 on its
# watermarked pages whose strokes pass for letters. A page is shrunk only if its pitch is at least this many
# times its text size (docs/denoise.md).
PITCH_PER_SIZE = 1.5
# text_size of the competition's 115 train_cleaned pages, median (page by page 9.8 to 17.4 px): the
# target of a checkpoint that does not record the text size of its own training pages
COMPETITION_TEXT_SIZE = 12.4
# Pages whose text is within this factor of the model's are cleaned as they are: the competition's own
# pages span 0.79x to 1.40x of their median, and a page measured on its noisy scan reads up to 4 % off;
# resampling a page the model already reads costs sharpness (docs/denoise.md).
KEEP_WITHIN = 1.5
# A model trained on patches enlarged up to --zoom-max times cleans text of up to this share of that size
# as it is, and larger text shrunk to it: at 3.2x, about 0.8 is within 0.5 % of the best share on pages
# enlarged 2x to 3x, and 19 % below 1 (all it learnt as it is) on pages enlarged 4.5x (docs/denoise.md).
ZOOM_AIM = 0.8
# Bounds on the factor: a page is enlarged at most 2x (4x the pixels, and a tiny estimate is more often
# dirt than text), and shrunk at most 8x.
FACTORS = (0.5, 8.0)
# A scan's default model, the first that has been trained: the scans recipe's (noise the competition never
# shows, text at a scan's sizes), the general recipes' (that noise; the longer one is better on it and on
# the competition's pages, docs/general.md), the competition's (`make demo`'s)
PROJECT = Path(__file__).resolve().parents[2]   # the folder holding src/, and models/ beside it
DEFAULT_CHECKPOINTS = (Path("models/scans_best.pt"), Path("models/general_long_best.pt"),
                       Path("models/general_best.pt"), Path("models/denoiser_best.pt"))
# The denoisers learnt text whose strokes are a few px wide, and clear the inside of wider ones as if it
# were a stain: a heading, a logo, a redaction bar come out as outlines. Bars 6-8 px wide lose their middle
# to the `quick` and `general` models, 8-12 px to `scans`; body text's strokes are 1-4 px. `keep_solid_ink`
# keeps strokes SOLID px wide or more (at the model's text size) as dark as the page shows them where they
# are type: as dark as print (TYPE_DARK, of the paper: headings measure 0.13-0.18) and with no thinner ink
# in their box (TYPE_TEXT). A watermark's letters are such strokes too, but grey (0.28-0.52 of the paper on
# the unseen-noise benchmark) or over the text (2-9 % of their box): kept, its watermarks scored 0.2482
# instead of 0.1176 (docs/denoise.md); `denoise --keep-solid` keeps them all. A page where more than HINT
# of the pixels are such ink left to the model and made lighter by over LIGHTENED says so.
SOLID = 5
TYPE_DARK, TYPE_TEXT = 0.3, 0.005
LIGHTENED, HINT = 0.3, 0.005
# The guided upsampling of a page cleaned shrunk (`guided_upsample`): the window's radius, px of the shrunk
# page, and the regularisation of its fit. A 3x3 window follows the model's changes from stroke to stroke;
# wider ones blend strokes with the paper (5x5: 2-5 % higher RMSE on enlarged pages, docs/denoise.md).
GUIDE_RADIUS = 1
GUIDE_EPS = 1e-4


def paper_normalised(page: np.ndarray) -> np.ndarray:
    """The page divided by its local paper brightness: (H, W) float32 in [0, 1], paper about 1.

    The paper is the brightest pixel nearby (a grey dilation, which removes the ink), smoothed; its
    window is a twentieth of the page's shorter side, wider than any stroke of body text, so stains,
    shadows and uneven light do not count as ink.
    """
    h, w = page.shape
    k = max(3, round(min(h, w) / 20) | 1)
    paper = cv2.blur(cv2.dilate(page, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))), (k, k))
    return np.clip(page / np.maximum(paper, 1e-3), 0, 1).astype(np.float32)


def ink_threshold(normalised: np.ndarray) -> float:
    """The paper_normalised value below which a page's pixels are ink: INK, or on a faded page INK of the
    way from its darkest ink to the paper (DARKEST, FADED, FAINTEST, DISTINCT)."""
    dark, low, paper = np.percentile(normalised, (DARKEST, 25, 50))
    if not FADED <= dark <= FAINTEST or paper - dark < DISTINCT * (paper - low):
        return INK
    return float(dark + INK * (1 - dark))


def measure(page: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(paper_normalised(page), its ink: uint8, 1 below ink_threshold): what `text_size`, `line_pitch` and
    `keep_solid_ink` read, which `clean_scan` measures once for all three (0.2 s on an A4 page at 300 dpi)."""
    normalised = paper_normalised(np.asarray(page, np.float32))
    return normalised, (normalised < ink_threshold(normalised)).astype(np.uint8)


def text_size(page: np.ndarray, bridge: int = 0, measured: tuple | None = None) -> float | None:
    """The typical height in pixels of a page's letters; None when the page shows too little ink.

    Ink (paper_normalised below ink_threshold: INK, higher on a faded page) is cut into 8-connected
    components; their heights are averaged, weighted by area so that specks of dirt count little, over
    those within half and twice the weighted median: letters with ascenders and without, not rules,
    borders or specks. Where that band holds few components beside the smaller ones (OUTNUMBERED,
    SMALLEST), its shapes are not letters and are left out. The value scales with the page: a page enlarged
    2.5x (cubic) measures 2.5x within 4 %; a faded page measures as it would at full contrast.

    Args: page: (H, W) float array in [0, 1], dark text on light paper; bridge: gaps of fewer rows than
    this between ink above and below are filled first (a vertical closing; BRIDGE), 0 for none;
    measured: `measure(page)`, where the caller has it.
    """
    ink = (measured or measure(page))[1]
    if bridge:
        ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((bridge, 1), np.uint8))
    stats = cv2.connectedComponentsWithStats(ink, connectivity=8)[2][1:]
    heights = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    keep = (heights >= 2) & (heights < page.shape[0] / 4)   # single-pixel noise; borders, pictures
    heights, area = heights[keep], area[keep]
    while True:
        if len(heights) < MIN_COMPONENTS:
            return None
        order = np.argsort(heights)
        cumulative = np.cumsum(area[order])
        size = heights[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
        smaller = heights <= size / 2
        band = (heights > size / 2) & (heights < size * 2)
        if band.sum() * OUTNUMBERED >= (smaller & (heights > size / SMALLEST)).sum():
            break
        heights, area = heights[smaller], area[smaller]
    for _ in range(2):   # twice: the band's mean moves the band a little
        band = (heights > size / 2) & (heights < size * 2)
        size = np.average(heights[band], weights=area[band])
    return float(size)


def line_pitch(page: np.ndarray, measured: tuple | None = None) -> float | None:
    """The distance in pixels from one line of text to the next; None when the page shows no rows of ink.

    The row profile of the ink (1 - paper_normalised, averaged along each row) repeats with the lines:
    the pitch is the highest peak of its autocorrelation between its first zero crossing and half the
    page. It measures the spacing, not the letters: double-spaced text reads twice as far apart.
    `measured`: `measure(page)`, where the caller has it.
    """
    ink = 1 - (measured[0] if measured else paper_normalised(np.asarray(page, np.float32)))
    profile = ink.mean(axis=1) - ink.mean()
    correlation = np.correlate(profile, profile, "full")[len(profile) - 1:]
    below = np.flatnonzero(correlation < 0)
    if not len(below) or below[0] >= len(correlation) // 2:
        return None
    return float(below[0] + np.argmax(correlation[below[0]:len(correlation) // 2]))


def training_text_size(pages: Sequence[np.ndarray]) -> float | None:
    """The median text_size of a model's training pages (their clean versions): its target; None if no
    page shows text."""
    sizes = [s for s in map(text_size, pages) if s is not None]
    return float(np.median(sizes)) if sizes else None


def scale_for(size: float | None, target: float, keep_within: float = KEEP_WITHIN,
              zoom: float = 1.0) -> float:
    """The factor a page is shrunk by (below 1: enlarged by) to bring text of `size` px to sizes its
    model learnt, within FACTORS; 1 when the size is unknown or the model learnt it.

    A model learns text of `target` px within `keep_within` of it, and if it was trained on enlarged
    patches up to `zoom` times larger: larger text is shrunk to `target` px, or to ZOOM_AIM x `zoom`
    times that; smaller text is enlarged to `target` px.
    """
    low, high = kept_sizes(target, keep_within, zoom)
    if size is None or low <= size <= high:
        return 1.0
    return float(np.clip(size / (target if size < target else target * largest_aim(zoom)), *FACTORS))


def largest_aim(zoom: float) -> float:
    """How many times its target size a model cleans text at most: ZOOM_AIM x `zoom` for a model
    trained on patches enlarged up to `zoom` times, 1 for the others."""
    return 1.0 if zoom == 1 else ZOOM_AIM * zoom


def kept_sizes(target: float, keep_within: float = KEEP_WITHIN, zoom: float = 1.0) -> tuple[float, float]:
    """The text sizes, px, that `scale_for` leaves as they are: the model's `target` within
    `keep_within`, up to `largest_aim` times it."""
    return target / keep_within, target * max(largest_aim(zoom), keep_within)


def resize(page: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 in [0, 1] -> `shape`: area averaging to shrink (no aliasing), cubic to enlarge,
    whose overshoot at the edges of strokes is clipped."""
    h, w = shape
    shrink = h * w < page.shape[0] * page.shape[1]
    out = cv2.resize(page, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0, 1, out=out)


def guided_upsample(page: np.ndarray, small: np.ndarray, cleaned: np.ndarray, radius: int = GUIDE_RADIUS,
                    eps: float = GUIDE_EPS) -> np.ndarray:
    """`cleaned` (the shrunk page `small`, cleaned) brought to the size of `page` through the page's own
    detail: in each (2 radius + 1)^2 window of the shrunk page, the cleaned page is fitted as an affine
    function of the shrunk one (least squares, regularised by `eps`: He and Sun's fast guided filter);
    the fits, averaged over the windows that hold a pixel and enlarged (bilinear), are applied to the
    page at its own size. The model's changes (paper to white, ink darker) carry over; the strokes'
    edges are the page's, not a blurred enlargement's.

    Args: page: (H, W) float32; small, cleaned: (h, w) float32, the page shrunk and its cleaned version.
    Returns: (H, W) float32 in [0, 1].
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.blur(a, size, borderType=cv2.BORDER_REFLECT)

    mean_small, mean_cleaned = box(small), box(cleaned)
    slope = (box(small * cleaned) - mean_small * mean_cleaned) / (box(small * small) - mean_small ** 2 + eps)
    offset = mean_cleaned - slope * mean_small
    h, w = page.shape
    slope, offset = (cv2.resize(box(c), (w, h), interpolation=cv2.INTER_LINEAR) for c in (slope, offset))
    return np.clip(slope * page + offset, 0, 1)


def clean_at_scale(models: nn.Module | Sequence[nn.Module], page: np.ndarray, factor: float,
                   **predict) -> np.ndarray:
    """predict_page on the page shrunk by `factor` (enlarged when below 1), returned at the page's size,
    its strokes as sharp as the page's own (`guided_upsample`).

    Args:
        page: (H, W) float array in [0, 1].
        factor: the page's text size over the model's (`scale_for`); 1 cleans the page as it is.
        predict: predict_page's keyword arguments (tile, tta, device, ...).
    Returns: (H, W) float32 in [0, 1].
    """
    page = np.asarray(page, np.float32)
    if factor == 1:
        return predict_page(models, page, **predict)
    h, w = page.shape
    small = resize(page, (max(1, round(h / factor)), max(1, round(w / factor))))
    cleaned = predict_page(models, small, **predict)
    if factor < 1:   # enlarged to be cleaned: the page holds no detail finer than the model saw
        return resize(cleaned, (h, w))
    # Enlarging the cleaned page alone blurs its strokes; the page at its own size holds them sharp
    # (docs/denoise.md, "Scale: why, and how")
    return guided_upsample(page, small, cleaned)


def clean_scan(models: nn.Module | Sequence[nn.Module], page: np.ndarray, target: float, zoom: float = 1.0,
               scale: float = 0.0, tile: int = 0, keep_solid: bool = False,
               **predict) -> tuple[np.ndarray, float | None, float, float]:
    """A scan's page cleaned as `python -m src.denoise` cleans it: its text measured (`text_size`), the
    page brought to the model's text size (`scale_for`; `scale`, when given, instead), cleaned in
    `tile_for`'s tiles (`tile`, when given, instead) by `clean_at_scale`.

    Type wider than the model's strokes is kept (`keep_solid_ink`; `keep_solid`: all such ink).
    Args: target, zoom: the models' text size and zoom (`load_denoisers`); predict: predict_page's
    keyword arguments. Returns: (the cleaned page, its text size or None, the factor it was cleaned at,
    the share of its pixels that are such ink left to the model, which made them lighter).
    """
    measured = measure(page)
    size = text_size(page, measured=measured)   # with `scale` too: what the default would have done is logged
    factor = scale or scale_for(size, target, zoom=zoom)
    if factor < 1 and not scale and scale_for(text_size(page, BRIDGE, measured), target, zoom=zoom) >= 1:
        factor = 1.0   # letters cut into strips, not small text (BRIDGE)
    if factor > 1 and not scale and (line_pitch(page, measured) or np.inf) < PITCH_PER_SIZE * size:
        factor = 1.0   # "letters" taller than the lines are apart: a watermark's strokes (PITCH_PER_SIZE)
    cleaned = clean_at_scale(models, page, factor, tile=tile or tile_for(page.shape, factor), **predict)
    kept, lightened = keep_solid_ink(page, cleaned, max(2, round(SOLID * factor)), keep_solid, measured)
    return kept, size, factor, lightened


def keep_solid_ink(page: np.ndarray, cleaned: np.ndarray, width: int = SOLID, every: bool = False,
                   measured: tuple | None = None) -> tuple[np.ndarray, float]:
    """(`cleaned` with the page's type kept where its strokes are at least `width` px wide, SOLID: there no
    lighter than the page divided by its paper, paper_normalised; the share of the page's pixels that
    are such ink not kept and that `cleaned` made lighter by over LIGHTENED).

    Type is a shape of such ink as dark as print (its mean below TYPE_DARK) with no thinner ink in its
    box (at most TYPE_TEXT of it): a heading stands apart from the text, a watermark lies over it.
    `every`: all such ink is kept, a watermark's grey letters too.

    Args: page, cleaned: (H, W) float arrays in [0, 1], the page and the model's cleaning of it;
    measured: `measure(page)`, where the caller has it.
    """
    normalised, ink = measured or measure(page)
    solid = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((width, width), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    x, y, w, h, area = stats.T
    thin = ink & (1 - cv2.dilate(solid, np.ones((3, 3), np.uint8)))   # ink of strokes thinner than `width`
    sums = cv2.integral(thin)
    inside = sums[y + h, x + w] - sums[y, x + w] - sums[y + h, x] + sums[y, x]
    darkness = np.bincount(labels.ravel(), normalised.ravel(), count) / np.maximum(area, 1)
    typed = np.ones(count, bool) if every else (inside <= TYPE_TEXT * w * h) & (darkness <= TYPE_DARK)
    typed[0] = False   # the background
    kept = typed[labels]
    lightened = float((solid.astype(bool) & ~kept & (cleaned > normalised + LIGHTENED)).mean())
    return np.where(kept, np.minimum(cleaned, normalised), cleaned), lightened


def solid_hint(lightened: float) -> str:
    """What a page's log line adds where the model lightened ink wider than its strokes that was not kept
    (`clean_scan`)."""
    if lightened <= HINT:
        return ""
    return (f"; {lightened:.1%} of it is ink wider than the model's strokes, grey or over the text, left to "
            f"the model (a watermark? --keep-solid keeps it)")


def target_text_size(checkpoints: Sequence[dict]) -> tuple[float, int]:
    """(the text size, px, the checkpoints' models learnt: the mean of what they record; how many record
    none and count as COMPETITION_TEXT_SIZE)."""
    sizes = [c.get("text_size") or COMPETITION_TEXT_SIZE for c in checkpoints]
    return float(np.mean(sizes)), sum(not c.get("text_size") for c in checkpoints)


def learnt_zoom(checkpoints: Sequence[dict]) -> float:
    """How many times their text size the checkpoints' models all learnt text at: the --zoom-max of runs
    trained with --zoom (the smallest of them), 1 for the others."""
    configs = [c.get("config", {}) for c in checkpoints]
    return min(c.get("zoom_max", 1.0) if c.get("zoom", 0) > 0 else 1.0 for c in configs)


def describe_scale(size: float | None, target: float, factor: float, zoom: float = 1.0) -> str:
    """How a page is cleaned, for the log: 'text 31.0 px (model as it is: 8.3 to 18.6 px): cleaned at
    0.40x'. The range is what the model cleans without resampling (`kept_sizes`), not all it learnt:
    a zoom model learnt text up to `zoom` times its target but cleans the largest of it shrunk."""
    low, high = kept_sizes(target, zoom=zoom)
    kept = f"model as it is: {low:.1f} to {high:.1f} px"
    text = "no text found" if size is None else f"text {size:.1f} px ({kept})"
    return f"{text}: cleaned at {'its own size' if factor == 1 else f'{1 / factor:.2f}x'}"


def load_denoisers(paths: Sequence[Path] | None, device, log=print) -> tuple[list[nn.Module], float, float]:
    """(models, target text size, zoom): the checkpoints' models, the text size they learnt and how many
    times larger they learnt it too (`learnt_zoom`); without paths, the first of DEFAULT_CHECKPOINTS that
    exists. Logs which models it took."""
    if not paths:
        # the current folder's models/, then the project's: `denoise` is run from a folder of scans too
        bases = [Path()] + ([PROJECT] if PROJECT != Path.cwd().resolve() else [])
        found = [base / p for base in bases for p in DEFAULT_CHECKPOINTS if (base / p).exists()]
        if not found:
            where = " or ".join(map(str, DEFAULT_CHECKPOINTS))
            where += f", here or in {PROJECT}" if bases[1:] else ""
            raise CheckpointError(f"no checkpoint at {where}: `make demo` trains one (or python -m "
                                  f"src.train_denoiser --preset scans), or name one with --checkpoint")
        paths = found[:1]
    for path in paths:
        if not Path(path).exists():
            raise CheckpointError(f"{path}: checkpoint not found; name one with --checkpoint")
    loaded = [load_model(p, kind="denoiser", device=device) for p in paths]
    log("model: " + ", ".join(f"{p} (preset {c.get('config', {}).get('preset', '?')})"
                              for p, (_, c) in zip(paths, loaded)))
    target, unrecorded = target_text_size([ckpt for _, ckpt in loaded])
    if unrecorded:
        log(f"{unrecorded} of {len(loaded)} checkpoints record no text size: the competition's "
            f"({target:.1f} px) taken as theirs")
    return [model for model, _ in loaded], target, learnt_zoom([ckpt for _, ckpt in loaded])
