import math

import numpy as np
import pytest

from src.inference.metrics import (PIXEL_CLASSES, error_breakdown, pixel_classes, pooled_rmse, psnr,
                                   psnr_from_rmse, rmse, squared_error_sum)


def test_rmse_hand_computed():
    # errors 0.1 and 0.3 -> mean square (0.01 + 0.09) / 2 = 0.05
    assert rmse([0.1, 0.7], [0.0, 1.0]) == pytest.approx(math.sqrt(0.05), abs=1e-12)


def test_rmse_zero_and_range():
    a = np.random.default_rng(0).random((5, 7))
    assert rmse(a, a) == 0.0
    assert rmse(np.zeros((3, 3)), np.ones((3, 3))) == 1.0


def test_pooled_rmse_weights_pages_by_pixels_not_by_page():
    big_p, big_t = np.zeros((10, 10)), np.zeros((10, 10))   # 100 px, no error
    small_p, small_t = np.zeros(1), np.ones(1)              # 1 px, error 1
    assert pooled_rmse([(big_p, big_t), (small_p, small_t)]) == pytest.approx(math.sqrt(1 / 101))
    assert squared_error_sum(small_p, small_t) == (1.0, 1)


def test_float64_accumulation():
    a = np.full(10_000_000, 0.5, np.float32)
    b = np.full(10_000_000, 0.5001, np.float32)
    assert rmse(a, b) == pytest.approx(1e-4, rel=1e-3)


def test_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        rmse(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])
    with pytest.raises(ValueError, match="no pages"):
        pooled_rmse([])


def test_psnr():
    assert psnr_from_rmse(0.1) == pytest.approx(20.0)
    assert psnr(np.zeros(4), np.zeros(4)) == math.inf


def test_pixel_classes_by_value_and_distance_to_ink():
    y = np.ones((7, 9))
    y[3, 1], y[3, 2], y[3, 3] = 0.05, 0.3, 0.7          # ink, ink edge, light edge
    cls = pixel_classes(y, near=2)
    names = [PIXEL_CLASSES[c] for c in cls[3, 1:5]]
    assert names == ["ink", "ink edge", "light edge", "white near ink"]
    assert PIXEL_CLASSES[cls[3, 5]] == "white"              # 3 px right of the last dark pixel (x = 2)
    assert PIXEL_CLASSES[cls[1, 0]] == "white near ink" and PIXEL_CLASSES[cls[0, 0]] == "white"
    # dark pixels (< 0.5) at x = 1, 2 of row 3: their 5x5 squares cover rows 1-5, columns 0-4 (25
    # pixels), of which 3 are not white
    assert (cls == PIXEL_CLASSES.index("white near ink")).sum() == 25 - 3
    assert np.array_equal(pixel_classes(np.ones((3, 3))), np.full((3, 3), 4))


def test_error_breakdown_shares_add_up_and_match_the_rmse():
    y = np.ones((10, 10))
    y[4:6, 4:6] = 0.0                                        # 4 ink pixels
    pred = y.copy()
    pred[4, 4] = 0.2                                         # error 0.04 on ink
    pred[0, 0] = 0.9                                         # error 0.01 on far white
    out = error_breakdown([(pred, y), (y, y)])
    assert sum(v[0] for v in out.values()) == pytest.approx(1.0)
    assert sum(v[1] for v in out.values()) == pytest.approx(1.0)
    assert out["ink"][1] == pytest.approx(0.04 / 0.05) and out["white"][1] == pytest.approx(0.01 / 0.05)
    assert out["ink"][0] == pytest.approx(8 / 200) and out["ink"][2] == pytest.approx(np.sqrt(0.04 / 8))
    pooled = np.sqrt(sum(share * rmse_ ** 2 for share, _, rmse_ in out.values()))
    assert pooled == pytest.approx(pooled_rmse([(pred, y), (y, y)]))
    with pytest.raises(ValueError, match="shape mismatch"):
        error_breakdown([(pred, y[:5])])
