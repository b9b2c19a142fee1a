import numpy as np
import pytest
import torch

from src.inference.consensus import (ROWS, SPREAD_FLOOR, STEPS, TRIM, _spread, compact, confidence, describe,
                                     ink_distance, iqm_of_groups, match_pages, weighted_iqm)


def text_page(seed: int, shape=(60, 80)) -> np.ndarray:
    """A white page with dark strokes at places the seed picks: one 'text'."""
    page = np.ones(shape, np.float32)
    rng = np.random.default_rng(seed)
    for y, x in zip(rng.integers(5, shape[0] - 5, 6), rng.integers(5, shape[1] - 12, 6)):
        page[y:y + 2, x:x + 8] = 0.05
    return page


def on_background(page: np.ndarray, seed: int, sigma: float = 0.03) -> np.ndarray:
    return np.clip(page + np.random.default_rng(seed).normal(0, sigma, page.shape), 0, 1).astype(np.float32)


def test_pages_of_one_text_group_and_other_texts_do_not():
    a, b = text_page(1), text_page(2)
    pages = [on_background(a, 10), on_background(b, 11), on_background(a, 12), on_background(a, 13),
             on_background(text_page(1, (60, 81)), 14)]   # same strokes on a page of another size
    assert match_pages(pages) == [0, 1, 0, 0, 2]
    assert ink_distance(pages[0], pages[2]) < 0.1 < 0.5 < ink_distance(pages[0], pages[1])
    # over whole pages the two texts are close (mostly white); over their ink they are not
    assert np.sqrt(np.mean((pages[0] - pages[1]) ** 2)) < 0.25
    blank = np.ones((60, 80), np.float32)
    assert match_pages([blank, blank * 0.98, pages[0]]) == [0, 1, 2]   # no ink, no evidence of one text


def test_consensus_of_a_text_removes_background_errors_and_leaves_single_pages():
    truth = text_page(3)
    pages = [on_background(truth, s, sigma=0.05) for s in range(4)] + [on_background(text_page(4), 9)]
    groups = match_pages(pages)
    out = iqm_of_groups(pages, groups, [p[None] for p in pages], pages)   # one view each, alike weighted
    assert out[4] is pages[4]
    assert all(np.array_equal(out[0], o) for o in out[1:4])

    def err(p):
        return np.sqrt(np.mean((p - truth) ** 2))

    assert err(out[0]) < 0.75 * min(err(p) for p in pages[:4])
    assert out[0].dtype == np.float32


def flat(*values, shape=(2, 3)) -> np.ndarray:
    return np.stack([np.full(shape, v, np.float32) for v in values])


def test_consensus_over_views_pools_every_view_of_a_text():
    preds = list(flat(0.5, 0.6, 0.9))
    views = [flat(0.1, 0.9), flat(0.2, 0.3), flat(0.8, 1.0)]
    out = iqm_of_groups(preds, [0, 0, 1], views, list(flat(0.9, 0.2, 0.9)))
    # the weighted interquartile mean of the views 0.1, 0.9 (noisy page 0.9: weights 1/0.83, 1/0.03,
    # both divided by their spread 0.4 + 0.01) and 0.2, 0.3 (noisy page 0.2: 1/0.03, 1/0.13, by 0.05 +
    # 0.01), not of the predictions 0.5 and 0.6: the middle half of the weight falls on 0.2 and 0.3
    w = np.array([1 / 0.83 / 0.41, 1 / 0.03 / 0.06, 1 / 0.13 / 0.06, 1 / 0.03 / 0.41])   # 0.1, 0.2, 0.3, 0.9
    cum = np.cumsum(w)
    on_02, on_03 = cum[1] - cum[-1] / 4, cum[-1] * 3 / 4 - cum[1]
    np.testing.assert_allclose(np.stack(out[:2]), (0.2 * on_02 + 0.3 * on_03) / (on_02 + on_03), rtol=1e-5)
    assert 0.2 < out[0][0, 0] < 0.21
    assert out[2] is preds[2] and out[0].dtype == np.float32   # a page alone keeps its prediction


def test_views_that_changed_their_page_more_weigh_less():
    """Two pages stained at a white pixel (noisy 0.4) that their views leave too dark, two clean there:
    the plain median lands between them, the weighted mean of the middle half by the clean pages' white."""
    noisy = list(flat(1.0, 1.0, 0.4, 0.4))
    views = [flat(1.0), flat(0.98), flat(0.7), flat(0.75)]
    weights = [confidence(x, v) for x, v in zip(noisy, views)]
    changed = np.array([1 / 0.03, 1 / 0.05, 1 / 0.33, 1 / 0.38])   # one view a page: no spread
    np.testing.assert_allclose([w.flat[0] for w in weights], changed / SPREAD_FLOOR, rtol=1e-5)
    out = iqm_of_groups([v[0] for v in views], [0] * 4, views, noisy)
    assert np.median(np.concatenate(views)) == np.float32(0.865)
    equal = weighted_iqm(np.concatenate(views), np.ones((4, 2, 3), np.float32))
    np.testing.assert_allclose(equal, 0.865, rtol=1e-6)   # middle half, equal weights: (0.75 + 0.98) / 2
    # sorted 0.7, 0.75, 0.98, 1.0: the middle half of the weight holds only the clean pages' views
    w = changed / SPREAD_FLOOR   # views 1.0, 0.98, 0.7, 0.75
    below_1 = w[1:].sum()         # the weight up to and with 0.98; the stained pages' is under a quarter
    on_098, on_1 = below_1 - w.sum() / 4, w.sum() * 3 / 4 - below_1
    np.testing.assert_allclose(out[0], (0.98 * on_098 + on_1) / (on_098 + on_1), rtol=1e-6)
    assert (out[0] > 0.99).all()


def test_views_of_a_page_that_disagree_weigh_less():
    """Two pages that their views change alike: one page's views disagree (0.5 and 0.9), the other's
    agree (0.85 twice). Weighed by the change alone the result leans to 0.9; the agreeing page wins it."""
    noisy = list(flat(0.9, 0.9))
    views = [flat(0.5, 0.9), flat(0.85, 0.85)]
    weights = [confidence(x, v) for x, v in zip(noisy, views)]
    np.testing.assert_allclose(weights[0][:, 0, 0], [1 / 0.43 / 0.21, 1 / 0.03 / 0.21], rtol=1e-5)
    assert confidence(noisy[0], views[0].astype(np.float64)).dtype == np.float32   # as the docstring says
    out = iqm_of_groups([v.mean(0) for v in views], [0, 0], views, noisy)
    assert np.all(out[0] == np.float32(0.85))
    changed = [1 / (np.abs(x - v) + 0.03) for x, v in zip(noisy, views)]
    by_change = weighted_iqm(np.concatenate(views), np.concatenate(changed))
    assert (by_change > 0.87).all()   # 0.5, 0.85, 0.85, 0.9 weighted 2.3, 12.5, 12.5, 33.3: 0.88


@pytest.mark.parametrize("n", [1, 2, 4, 64])
def test_weighted_iqm_of_equal_weights_is_the_mean_of_the_middle_half(rng, n):
    values = rng.random((n, 70, 30), dtype=np.float32)   # 70 rows: more than one block of ROWS
    ordered = np.sort(values, 0)
    middle = ordered[n // 4:n - n // 4].mean(0, dtype=np.float64) if n > 2 else values.mean(0)
    np.testing.assert_allclose(weighted_iqm(values, np.full_like(values, 0.37)), middle, rtol=1e-6)
    small = compact(values)
    got = weighted_iqm(small, np.ones(small.shape, np.float32)) / STEPS
    np.testing.assert_allclose(got, middle, atol=1 / STEPS)
    weights = rng.random(values.shape, dtype=np.float32)   # any weights: within the pixel's views
    got = weighted_iqm(values, weights)
    assert got.dtype == np.float32 and ((got >= values.min(0)) & (got <= values.max(0))).all()


def test_weighted_iqm_weighs_a_view_as_that_many_copies(rng):
    """Integer weights count as copies of the view: the cut may fall inside a view's weight."""
    values = rng.random((5, 70, 3), dtype=np.float32)
    weights = np.array([1, 2, 3, 1, 1], np.float32)   # 8 copies: the middle half is 4 of them
    copies = np.repeat(values, weights.astype(int), axis=0)
    middle = np.sort(copies, 0)[2:6].mean(0, dtype=np.float64)
    got = weighted_iqm(values, np.broadcast_to(weights[:, None, None], values.shape))
    np.testing.assert_allclose(got, middle, rtol=1e-6)
    assert not np.allclose(got, np.median(values, 0))


def test_compact_views_give_the_consensus_to_within_1e_4(rng):
    views = [rng.random((5, 20, 30), dtype=np.float32) for _ in range(3)]
    small = [compact(v) for v in views]
    assert small[0].dtype == np.uint16 and small[0].nbytes * 2 == views[0].nbytes
    assert compact(np.array([0.0, 1.0])).tolist() == [0, STEPS]
    noisy = [v[0] for v in views]
    full, half = (iqm_of_groups(noisy, [0, 0, 0], vs, noisy)[0] for vs in (views, small))
    # the weights come from the rounded views too, and the mean moves with them (the median only picked
    # a view): at most ~1e-4 on these random views; 3e-10 of RMSE on the held-out texts (README)
    assert half.dtype == np.float32 and np.abs(half - full).max() <= 1e-4
    assert not np.array_equal(half, full)   # each view really went through uint16 and back


@pytest.mark.parametrize("groups, text", [
    ([0, 1, 2], "3 pages, no two of the same text: each kept as predicted"),
    ([0, 0, 1, 1, 1, 2], "6 pages, 5 of them showing 2 texts of 2-3 pages each"),
    ([0, 0, 0, 0, 1, 1, 1, 1], "8 pages, 8 of them showing 2 texts of 4 pages each"),
])
def test_describe_counts_pages_and_texts(groups, text):
    assert describe(groups).startswith(text)


def reference_weighted_iqm(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """weighted_iqm spelled out: each pixel's views sorted by an argsort, and the weight of each
    inside the middle half taken as the overlap of its interval of cumulative weight with it."""
    order = np.argsort(values, 0, kind="stable")
    v = np.take_along_axis(values, order, 0).astype(np.float64)
    w = np.take_along_axis(weights, order, 0).astype(np.float64)
    cum = np.cumsum(w, 0)
    lo, hi = cum[-1] * TRIM, cum[-1] * (1 - TRIM)
    kept = np.clip(np.minimum(cum, hi) - np.maximum(cum - w, lo), 0, None)
    return ((kept * v).sum(0) / kept.sum(0)).astype(np.float32)


@pytest.mark.parametrize("n, threads", [(1, 1), (3, 2), (64, 2), (64, 1), (200, 3)])
def test_weighted_iqm_equals_its_plain_definition(rng, monkeypatch, n, threads):
    """Compact views (packed into one uint32 sort) and float views, with ties, on 1-3 threads, a last
    block of rows shorter than ROWS: the same means as the plain definition, to float32 rounding."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    floats = np.round(rng.random((n, ROWS * 2 + 5, 7)), 2).astype(np.float32)   # ties: 101 levels
    weights = rng.random(floats.shape, dtype=np.float32) + 0.01
    for values in (floats, compact(floats)):
        np.testing.assert_allclose(weighted_iqm(values, weights), reference_weighted_iqm(values, weights),
                                   rtol=1e-6)


def test_confidence_fills_out_and_computes_the_spread_as_numpy_does(rng):
    page = rng.random((40, 30), dtype=np.float32)
    for views in (rng.random((16, 40, 30), dtype=np.float32), compact(rng.random((16, 40, 30)))):
        floats = views / np.float32(STEPS) if views.dtype == np.uint16 else views
        assert np.array_equal(_spread(views), floats.std(0, dtype=np.float64).astype(np.float32))
        out = np.empty(views.shape, np.float32)
        assert confidence(page, views, out=out) is out
        assert np.array_equal(out, confidence(page, views))
    same = np.repeat(rng.random((1, 40, 30), dtype=np.float32), 5, axis=0)
    assert (_spread(same) == 0).all()   # views that agree have no spread at all


def test_iqm_of_groups_of_several_pages_on_several_threads_equals_one_thread(rng, monkeypatch):
    truth = text_page(5)
    pages = [on_background(truth, s) for s in range(4)]
    views = [compact(np.clip(p + rng.normal(0, 0.02, (8, *p.shape)), 0, 1)) for p in pages]
    one, two = [], []
    for threads, got in ((1, one), (2, two)):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        got += iqm_of_groups(pages, [0] * 4, views, pages)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
