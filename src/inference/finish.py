"""What `python -m src.denoise` may do to a cleaned page before writing it: turn it upright (--deskew) and
make it black and white (--bilevel).

Both work on the cleaned page, where the paper is white and the ink is the text alone: its lines are
found there without the stains and grain of the scan, and it is two levels already but for the grey at
the edges of its strokes (paper about 1, ink below 0.3).
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

# The black-and-white threshold is Otsu's on the cleaned page, within these bounds: ink the model left grey
# (faded text, a page it could not clean whole) falls below the page's own split between paper and ink
# even where that lies above 0.5, and on a page with hardly any ink (blank, or a few marks) Otsu would
# split the paper's own slight variations, which the bounds keep white.
LOWEST, HIGHEST = 0.35, 0.65

# Skew: angles searched, degrees either way (a page fed or laid on the glass askew; a page turned further
# is not a page of lines to this search), and the steps of the search, coarse then fine around the best.
MAX_SKEW, COARSE, FINE = 10.0, 0.5, 0.05
# A page turned by less than MIN_SKEW is left as it is: over a 2480 px wide page 0.1 degrees moves its ends
# by 2 px, and turning it resamples every stroke. SHARPNESS: how much more its ink must gather into rows at
# the best angle than at the median one before a page counts as lines of text (a photo, a drawing or a
# blank page does not, and is not turned; docs/denoise.md, *Turned pages*). POINTS: the ink pixels the
# search follows at most, a random sample of a larger page's (their rows are as sharp, and the search
# takes 0.07 s on an A4 page at 300 dpi).
MIN_SKEW, SHARPNESS, POINTS = 0.1, 1.5, 200_000


def black_and_white(cleaned: np.ndarray) -> np.ndarray:
    """(H, W) bool, True for paper: a cleaned page, float in [0, 1], split at its Otsu threshold held
    within LOWEST to HIGHEST."""
    cleaned = np.asarray(cleaned, np.float32)
    split = threshold_otsu(cleaned) if cleaned.min() < cleaned.max() else 0.5
    return cleaned >= np.clip(split, LOWEST, HIGHEST)


def skew_angle(cleaned: np.ndarray, max_skew: float = MAX_SKEW) -> float | None:
    """The angle, degrees anticlockwise, by which a cleaned page's lines of text are turned from the
    horizontal (within `max_skew`); None where the page shows no lines (SHARPNESS).

    The angle at which the ink, counted row by row along it, gathers into the fewest, fullest rows: the
    sum of the squared counts is largest where each line of text falls in rows of its own.
    """
    ys, xs = np.nonzero(np.asarray(cleaned) < 0.5)
    if len(ys) < 100:
        return None
    if len(ys) > POINTS:
        keep = np.random.default_rng(0).choice(len(ys), POINTS, replace=False)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def gathered(angle: float) -> float:
        t = np.deg2rad(angle)
        rows = np.rint(ys * np.cos(t) + xs * np.sin(t)).astype(np.int64)
        counts = np.bincount(rows - rows.min()).astype(np.float64)
        return float(counts @ counts)

    coarse = np.arange(-max_skew, max_skew + COARSE / 2, COARSE)
    scores = np.array([gathered(a) for a in coarse])
    if scores.max() < SHARPNESS * np.median(scores):
        return None
    best = coarse[scores.argmax()]
    fine = np.arange(best - COARSE, best + COARSE + FINE / 2, FINE)
    scores = np.array([gathered(a) for a in fine])
    # on a narrow page neighbouring steps move no pixel to another row: the middle of the tie
    return float(fine[scores == scores.max()].mean())


def upright(cleaned: np.ndarray, angle: float | None) -> np.ndarray:
    """The cleaned page turned by -`angle` degrees about its centre on a sheet of its size, the corners it
    uncovers white; as it is where `angle` is None or under MIN_SKEW."""
    if angle is None or abs(angle) < MIN_SKEW:
        return cleaned
    h, w = cleaned.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), -angle, 1.0)
    turned = cv2.warpAffine(np.asarray(cleaned, np.float32), turn, (w, h), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    return np.clip(turned, 0, 1)


def finish(cleaned: np.ndarray, deskew: bool = False, bilevel: bool = False) -> tuple[np.ndarray, str]:
    """(the cleaned page as `denoise` writes it: turned upright with `deskew`, black and white (bool) with
    `bilevel`; what its log line adds: the turn, or that no lines were found to turn it by)."""
    said = ""
    if deskew:
        angle = skew_angle(cleaned)
        cleaned = upright(cleaned, angle)
        said = ("; no lines of text to turn it upright by" if angle is None else
                f"; turned {-angle:+.2f} degrees upright" if abs(angle) >= MIN_SKEW else "; upright already")
    return (black_and_white(cleaned) if bilevel else cleaned), said
