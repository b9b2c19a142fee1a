"""The generated dataset: layout, alignment, realism ranges, determinism, idempotency."""
import os
import time

import cv2
import numpy as np
import pytest

from src.common.errors import DataError
from src.data.competition import CLEAN, SAMPLE, TEST, TRAIN, count_csv_rows, prepare_data
from src.data.splits import text_groups
from src.data.synthetic import (FAMILIES, FORMAT, degrade, group_sizes, make_pair, make_synthetic_competition,
                                page_plan, render_clean_page)

N_TRAIN, N_TEST = 4, 2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_competition(tmp_path_factory.mktemp("syn"), N_TRAIN, N_TEST, seed=0)


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def names(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def test_layout_and_names(root):
    train, clean, test = names(root / TRAIN), names(root / CLEAN), names(root / TEST)
    assert train == clean and len(train) == N_TRAIN and len(test) == N_TEST
    assert not set(train) & set(test)
    assert all(n[:-4].isdigit() for n in train + test)
    assert (root / ".synthetic").read_text() == FORMAT
    assert not list(root.rglob(".*.tmp")) and not (root / ".synthetic.partial").exists()


def test_pages_are_8bit_gray_competition_sized(root):
    for p in root.rglob("*.png"):
        img = read(p)
        assert img.dtype == np.uint8 and img.ndim == 2
        assert img.shape[0] in (258, 420) and img.shape[1] == 540
    for p in (root / TRAIN).glob("*.png"):
        assert read(p).shape == read(root / CLEAN / p.name).shape


def test_clean_pages_are_mostly_pure_white_with_black_text():
    for i in range(3):
        clean = render_clean_page(np.random.default_rng(i), 258)
        assert 0.6 < (clean == 255).mean() < 0.95
        assert clean.min() < 40                     # some strokes reach near black


def test_noisy_is_pixel_aligned_with_clean():
    for page in range(4):
        noisy, clean = (a.astype(np.float32) / 255 for a in make_pair(0, page, 420))
        text = clean < 0.3
        near = cv2.dilate(text.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        paper = cv2.erode((clean == 1).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert noisy[text].mean() < noisy[near & paper].mean() - 0.3   # strokes darker than beside them
        # the noisy strokes sit exactly on the clean ones: no shift by one pixel matches better
        detail = cv2.GaussianBlur(noisy, (0, 0), 3) - noisy
        score = {s: float(np.sum((1 - clean) * np.roll(detail, s, (0, 1)))) for s in
                 [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]}
        assert max(score, key=score.get) == (0, 0)
        # on the paper the noisy page changes smoothly, at strokes it jumps
        grad = np.abs(cv2.Sobel(noisy, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(noisy, cv2.CV_32F, 0, 1))
        assert np.median(grad[paper]) < 0.25 * np.median(grad[near & ~paper & ~text])


def test_noise_level_is_like_the_competition():
    pairs = [(a.astype(np.float64) / 255 for a in make_pair(1, page, 258)) for page in range(8)]
    rmse, means, white = [], [], []
    for noisy, clean in pairs:
        rmse.append(np.sqrt(np.mean((noisy - clean) ** 2)))
        means.append(noisy.mean())
        white.append(np.mean(noisy == 1))
    assert 0.05 < min(rmse) and max(rmse) < 0.3
    assert 0.6 < min(means) and max(means) < 0.92
    assert np.median(white) < 0.05 and max(white) < 0.3   # the paper is (mostly) no longer pure white


def test_every_background_family_keeps_shape_and_range():
    for family in FAMILIES:
        out = family(np.random.default_rng(0), 258, 540)
        assert out.shape == (258, 540) and out.dtype == np.float32
        assert -0.8 < out.min() and out.max() < 0.5, family.__name__


def test_degrade_is_fast_and_keeps_shape():
    clean = render_clean_page(np.random.default_rng(0), 420)
    start = time.perf_counter()
    for i in range(5):
        noisy = degrade(clean, np.random.default_rng(i))
    assert (time.perf_counter() - start) / 5 < 0.2
    assert noisy.shape == clean.shape and noisy.dtype == np.uint8


def test_deterministic_for_a_seed(tmp_path, root):
    again = make_synthetic_competition(tmp_path / "a", N_TRAIN, N_TEST, seed=0)
    other = make_synthetic_competition(tmp_path / "b", N_TRAIN, N_TEST, seed=1)
    for d in (TRAIN, CLEAN, TEST):
        assert names(again / d) == names(root / d)
        for n in names(root / d):
            assert np.array_equal(read(again / d / n), read(root / d / n))
    assert (again / SAMPLE).read_bytes() == (root / SAMPLE).read_bytes()
    first = names(root / TRAIN)[0]
    assert not (other / TRAIN / first).exists() or not np.array_equal(
        read(other / TRAIN / first), read(root / TRAIN / first))


def test_sample_submission_matches_the_test_pages(root):
    tests = sorted((root / TEST).glob("*.png"), key=lambda p: int(p.stem))
    shapes = [read(p).shape for p in tests]
    assert count_csv_rows(root / SAMPLE) == sum(h * w for h, w in shapes)
    with open(root / SAMPLE) as f:
        lines = [next(f) for _ in range(shapes[0][0] + 2)]
    first, (h, _) = tests[0].stem, shapes[0]
    # the real file's order: page by page, column by column, the row varying fastest
    assert lines[:3] == ["id,value\n", f"{first}_1_1,1\n", f"{first}_2_1,1\n"]
    assert lines[h:h + 2] == [f"{first}_{h}_1,1\n", f"{first}_1_2,1\n"]
    last = (root / SAMPLE).read_text().splitlines()[-1]
    assert last == f"{tests[-1].stem}_{shapes[-1][0]}_{shapes[-1][1]},1"


def test_texts_repeat_over_backgrounds_as_in_the_competition(root):
    cleans = [read(root / CLEAN / n) for n in names(root / CLEAN)]
    groups = text_groups(cleans)
    assert len(set(groups)) < len(groups)            # some clean pages are identical: one text, two pages
    noisy = {n: read(root / TRAIN / n) for n in names(root / TRAIN)}
    for i, j in [(i, j) for i in range(len(groups)) for j in range(i) if groups[i] == groups[j]]:
        a, b = (noisy[names(root / TRAIN)[k]] for k in (i, j))
        assert not np.array_equal(a, b)              # ... on different backgrounds
    train, test, heights, texts = page_plan(144, 72, seed=0)    # the competition's counts
    sizes = [list(texts.values()).count(t) for t in set(texts.values())]
    assert {texts[i] for i in train}.isdisjoint(texts[i] for i in test)
    assert sorted(list(texts[i] for i in test).count(t) for t in {texts[i] for i in test}) == [4] * 18
    assert min(sizes) >= 2 and max(sizes) <= 4
    assert all(heights[i] == heights[texts[i]] and texts[texts[i]] == texts[i] for i in texts)


def test_group_sizes_add_up_within_bounds():
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        sizes = group_sizes(n, (2, 4), rng)
        assert sum(sizes) == n and all(2 <= s <= 4 for s in sizes) or n == 1 and sizes == [1]
    for n in range(1, 40):   # a size that cannot be met: only the last group is smaller
        sizes = group_sizes(n, (4, 4), rng)
        assert sum(sizes) == n and set(sizes[:-1]) <= {4} and 1 <= sizes[-1] <= 4


def test_an_older_format_is_made_again(tmp_path):
    make_synthetic_competition(tmp_path, 2, 1)
    (tmp_path / ".synthetic").write_text("")         # an older format's marker
    make_synthetic_competition(tmp_path, 2, 1)
    assert (tmp_path / ".synthetic").read_text() == FORMAT


def test_second_call_does_not_rewrite(tmp_path):
    make_synthetic_competition(tmp_path, 2, 1)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    time.sleep(0.01)
    make_synthetic_competition(tmp_path, 2, 1)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps


def test_half_written_dataset_is_regenerated(tmp_path):
    make_synthetic_competition(tmp_path, 2, 1)
    os.remove(tmp_path / ".synthetic")              # as if the run had died before the marker
    (tmp_path / ".synthetic.partial").touch()
    next(iter((tmp_path / TEST).glob("*.png"))).unlink()
    make_synthetic_competition(tmp_path, 2, 1)
    assert (tmp_path / ".synthetic").exists() and len(names(tmp_path / TEST)) == 1


def test_other_counts_replace_the_old_pages(tmp_path):
    make_synthetic_competition(tmp_path, 3, 2)
    make_synthetic_competition(tmp_path, 2, 1)
    assert len(names(tmp_path / TRAIN)) == 2 and len(names(tmp_path / TEST)) == 1


def test_refuses_to_overwrite_real_pages(tmp_path):
    (tmp_path / TRAIN).mkdir()
    cv2.imwrite(str(tmp_path / TRAIN / "2.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="not synthetic"):
        make_synthetic_competition(tmp_path, 2, 1)


def test_prepare_data_sees_a_synthetic_dataset(root):
    data = prepare_data(root)
    assert data.synthetic
    assert len(data.train_pairs) == N_TRAIN and len(data.test_images) == N_TEST
    assert data.sample_submission == root / SAMPLE
