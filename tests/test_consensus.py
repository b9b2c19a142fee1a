import numpy as np
import pytest

from src.consensus import STEPS, compact, describe, ink_distance, match_pages, median_of_groups


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


def test_median_of_a_text_removes_background_errors_and_leaves_single_pages():
    truth = text_page(3)
    pages = [on_background(truth, s, sigma=0.05) for s in range(4)] + [on_background(text_page(4), 9)]
    groups = match_pages(pages)
    out = median_of_groups(pages, groups, [p[None] for p in pages])   # one view each
    assert out[4] is pages[4]
    assert all(np.array_equal(out[0], o) for o in out[1:4])

    def err(p):
        return np.sqrt(np.mean((p - truth) ** 2))

    assert err(out[0]) < 0.75 * min(err(p) for p in pages[:4])
    assert out[0].dtype == np.float32


def test_median_over_views_pools_every_view_of_a_text():
    preds = [np.full((2, 3), v, np.float32) for v in (0.5, 0.6, 0.9)]
    views = [np.stack([np.full((2, 3), v, np.float32) for v in vs])
             for vs in ([0.1, 0.9], [0.2, 0.3], [0.8, 1.0])]
    out = median_of_groups(preds, [0, 0, 1], views)
    # median of 0.1, 0.9, 0.2, 0.3 (not of the predictions 0.5 and 0.6); a page alone keeps its prediction
    np.testing.assert_allclose(np.stack(out[:2]), 0.25)
    assert out[2] is preds[2] and out[0].dtype == np.float32


def test_compact_views_give_the_median_to_within_a_step(rng):
    views = [rng.random((5, 20, 30), dtype=np.float32) for _ in range(3)]
    small = [compact(v) for v in views]
    assert small[0].dtype == np.uint16 and small[0].nbytes * 2 == views[0].nbytes
    assert compact(np.array([0.0, 1.0])).tolist() == [0, STEPS]
    full, half = (median_of_groups([v[0] for v in views], [0, 0, 0], vs)[0] for vs in (views, small))
    assert half.dtype == np.float32 and np.abs(half - full).max() <= 1 / STEPS
    assert not np.array_equal(half, full)   # each view really went through uint16 and back


@pytest.mark.parametrize("groups, text", [
    ([0, 1, 2], "3 pages, no two of the same text: each kept as predicted"),
    ([0, 0, 1, 1, 1, 2], "6 pages, 5 of them showing 2 texts of 2-3 pages each"),
    ([0, 0, 0, 0, 1, 1, 1, 1], "8 pages, 8 of them showing 2 texts of 4 pages each"),
])
def test_describe_counts_pages_and_texts(groups, text):
    assert describe(groups).startswith(text)
