import math

import numpy as np
import pytest

from src.metrics import pooled_rmse, psnr, psnr_from_rmse, rmse, squared_error_sum


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
