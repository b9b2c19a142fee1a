"""Pages that show the same text, cleaned together.

The competition lays each text over several backgrounds, aligned to the pixel: Kaggle's 72 test pages
are 18 texts of 4 pages. Each page's prediction carries errors of its own background, and the median
of one text's predictions removes most of them (README: *Same text, several backgrounds*); the median
of all their views (each flip and shift of each page, by each model) removes a little more than the median of
the pages' averaged predictions (1-3 % lower RMSE, measured on four models), weighting each view
by how little it changed its noisy page there and by how well its page's views agree there
(`confidence`) 2-4 % more on held-out texts, and the weighted mean of the middle half of the views
(`weighted_iqm`) instead of their weighted median 1-4 % more. A page
whose ink matches no other page's is left as predicted; but pages that share most of their ink, such
as copies of one printed form filled in by hand, would be matched and lose what differs, so
make_submission matches the test pages, and --images pages only when all have the competition's
sizes, unless told to (--consensus).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from src.common.wording import counted

INK = 0.5        # a predicted pixel below this is ink
MAX_DIST = 0.25  # same text: ink distance up to 0.08 measured; different texts: 0.57 and more (README)
STEPS = 65535    # compact views: uint16 in steps of 1/STEPS, at most 8e-6 off (the CSV rounds to 5e-5)
SMOOTH = 1.0     # px: a view's change to its page, blurred by this Gaussian, sets its weight (`confidence`)
FLOOR = 0.03     # added to that change, so that views that leave their page as it is weigh alike
SPREAD_SMOOTH = 2.0   # px: how much a page's own views disagree, blurred by this Gaussian, divides them all
SPREAD_FLOOR = 0.01   # added to that spread: one view, or views that agree, are not infinitely sure
TRIM = 0.25      # the share of the views' weight cut from each end before averaging: the interquartile mean
ROWS = 32        # rows of a text's views sorted at a time: bounded memory, and in cache


def compact(views: np.ndarray) -> np.ndarray:
    """(V, H, W) views in [0, 1] as uint16: half the memory of float32 for make_submission, which holds
    every view of every page until all are matched (16 a page with TTA and 3 shifts; the 72 test pages
    with one model peaked at 1.46 GB in float32, 954 MB so)."""
    return np.rint(np.asarray(views) * STEPS).astype(np.uint16)


def ink_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMSE of two predicted pages over the pixels where either shows ink; inf for pages of other sizes
    and for two pages without ink (nothing says they show one text).

    Over whole pages two different texts are as close as their white margins make them; over the ink
    they are far apart.
    """
    if a.shape != b.shape:
        return float("inf")
    ink = np.minimum(a, b) < INK
    if not ink.any():
        return float("inf")
    return float(np.sqrt(np.mean(np.square(a[ink] - b[ink], dtype=np.float64))))


def match_pages(preds: list[np.ndarray], max_dist: float = MAX_DIST) -> list[int]:
    """A group number per page (0, 1, ... by first page); pages of one text share one.

    Each page joins the first group whose first page is within max_dist (`ink_distance`), so a page
    is compared with one page per text, not with every page.
    """
    firsts: list[int] = []
    groups = []
    for i, pred in enumerate(preds):
        group = next((g for g, j in enumerate(firsts) if ink_distance(preds[j], pred) < max_dist), None)
        if group is None:
            group = len(firsts)
            firsts.append(i)
        groups.append(group)
    return groups


def iqm_of_groups(preds: list[np.ndarray], groups: list[int], views: list[np.ndarray],
                  pages: list[np.ndarray]) -> list[np.ndarray]:
    """Each page of a group replaced by the pixelwise `weighted_iqm` of every view of the group's
    pages, each view weighted by its `confidence`; a page alone keeps its prediction.

    preds: per page, its (H, W) prediction; views: per page, its (V, H, W) views, from
    predict_page(..., views=True), as floats or `compact`ed; pages: per page, the noisy (H, W) page.
    """
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    means = {g: _iqm([views[i] for i in idx], [pages[i] for i in idx]) if len(idx) > 1 else None
             for g, idx in members.items()}
    return [preds[i] if means[g] is None else means[g] for i, g in enumerate(groups)]


def confidence(page: np.ndarray, views: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(V, H, W) float32 weights of a page's views: 1 / (how much the view changed the noisy page,
    blurred over SMOOTH px, + FLOOR) / (the standard deviation of the page's views, blurred over
    SPREAD_SMOOTH px, + SPREAD_FLOOR).

    Where a model had to change a page much (a stain, a fold, a watermark over the ink), its guess
    there is worse than that of a page of the same text that is cleaner there; and where a page's own
    views (flips, shifts, models) disagree, none of them is sure. Held-out texts, 3 shifts, batch-4
    `full` model, whose views chose the constants: 0.00666 -> 0.00647 with the change (0.9-2.1 % lower
    for four other models), 0.00641 with the spread too (0.7-0.9 % lower for five others and for
    ensembles; README: *Weighted median*, *Views that disagree*). out: a (V, H, W) float32 array to
    fill and return.
    """
    page, views = np.asarray(page, np.float32), np.asarray(views)
    spread = cv2.GaussianBlur(_spread(views), (0, 0), SPREAD_SMOOTH) + SPREAD_FLOOR
    out = np.empty(views.shape, np.float32) if out is None else out
    for view, weight in zip(views, out):   # a view at a time: no (V, H, W) temporaries
        change = np.abs(page - _float32(view))
        change = cv2.GaussianBlur(change, (0, 0), SMOOTH)
        change += FLOOR
        change *= spread
        np.divide(1, change, out=weight)
    return out


def _spread(views: np.ndarray) -> np.ndarray:
    """(H, W) float32: the standard deviation of a page's views, as `np.std(views, 0, dtype=np.float64)`
    computes it, bit for bit, but summed a view at a time.

    In float64, views that agree have no spread at all, not float32's 1e-7 here and there: weights that
    differed by such crumbs tipped the weighted median (before `weighted_iqm`) of two equally weighted
    pages from their mean to one page, and they would still make equal pages weigh unequally.
    """
    mean = np.zeros(views.shape[1:], np.float64)
    for view in views:
        mean += _float32(view)
    mean /= len(views)
    var = np.zeros_like(mean)
    for view in views:
        step = _float32(view) - mean
        step *= step
        var += step
    var /= len(views)
    return np.sqrt(var).astype(np.float32)


def weighted_iqm(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pixelwise weighted interquartile mean of (V, H, W) values, as float32: sort a pixel's values,
    cut TRIM of their total weight from each end (splitting a value's weight where a cut falls inside
    it) and take the weighted mean of what is left. Equal weights give the mean of the middle half;
    weights must be positive (`confidence`'s are).

    Near a stroke's edge a text's views spread over a range, and the median picks one of them; the
    mean of the middle half keeps the median's deafness to stained outliers and averages the rest.
    Held-out texts, 3 shifts: 1.7-2.1 % lower RMSE than the weighted median for each of three `full`
    models, 1.0 % for the three together, 4.4 % for `quick` (README: *Interquartile mean*).
    """
    n, height, width = values.shape
    out = np.empty((height, width), np.float32)

    def rows(r: int) -> None:
        # pixels x views: each pixel's views side by side in memory sort 1.6x as fast as along axis 0
        v, w = _sorted(*(a[:, r:r + ROWS].reshape(n, -1).T for a in (values, weights)))
        cum = np.cumsum(w, axis=1, dtype=np.float64)
        lo, hi = cum[:, -1:] * TRIM, cum[:, -1:] * (1 - TRIM)
        # each view's weight inside [lo, hi]: its cumulative weight clamped there less the previous view's,
        # in place (a block's time goes to passes over its arrays, not to the arithmetic)
        np.minimum(np.maximum(cum, lo, out=cum), hi, out=cum)
        kept = np.diff(cum, axis=1, prepend=lo)
        out[r:r + ROWS] = (np.einsum("pv,pv->p", kept, v) / kept.sum(1)).reshape(-1, width)

    _parallel(rows, range(0, height, ROWS))
    return out


def _sorted(v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, V) values and weights, each pixel's sorted by value (ties in any order: no mean changes)."""
    n = v.shape[1]
    if v.dtype == np.uint16 and n <= 1 << 16:
        # compact views: a value and its view's number in one uint32 sort 4x as fast as a stable argsort
        # and a gather of the values; the number then gathers the weights
        key = (v.astype(np.uint32, order="C") << 16) | np.arange(n, dtype=np.uint32)
        key.sort(axis=1)
        return key >> 16, np.take_along_axis(w, (key & 0xFFFF).astype(np.intp), 1)
    order = np.argsort(v, axis=1)
    return np.take_along_axis(v, order, 1), np.take_along_axis(w, order, 1)


def _parallel(work, items) -> list:
    """[work(item) for item in items] on as many threads as torch computes with (make_submission's
    --threads), which sit idle during the consensus: NumPy and OpenCV let go of the GIL in their loops."""
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        return list(pool.map(work, items))


def _floats(views: np.ndarray) -> np.ndarray:
    return views / np.float32(STEPS) if views.dtype == np.uint16 else views


def _float32(view: np.ndarray) -> np.ndarray:
    return _floats(view).astype(np.float32, copy=False)


def _iqm(views: list[np.ndarray], pages: list[np.ndarray]) -> np.ndarray:
    every = np.concatenate(views)
    weights = np.empty(every.shape, np.float32)
    ends = np.cumsum([len(v) for v in views])
    _parallel(lambda i: confidence(pages[i], views[i], out=weights[ends[i] - len(views[i]):ends[i]]),
              range(len(views)))
    mean = weighted_iqm(every, weights)
    return mean / np.float32(STEPS) if every.dtype == np.uint16 else mean


def clean_together(preds: list[np.ndarray], views: list[np.ndarray],
                   pages: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """(each page after consensus, its group number): pages matched from their predictions alone, as
    make_submission, the training report and bench_ensemble all do it. pages: the noisy pages."""
    groups = match_pages(preds)
    return iqm_of_groups(preds, groups, views, pages), groups


def describe(groups: list[int]) -> str:
    """What matching found, for the log."""
    sizes = np.bincount(groups)
    shared = sizes[sizes > 1]
    if not len(shared):
        return f"{counted(len(groups), 'page')}, no two of the same text: each kept as predicted"
    span = f"{shared.min()}" if shared.min() == shared.max() else f"{shared.min()}-{shared.max()}"
    return (f"{len(groups)} pages, {shared.sum()} of them showing {counted(len(shared), 'text')} of {span} "
            f"pages each: each of these takes its text's weighted interquartile mean")
