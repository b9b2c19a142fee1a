import numpy as np
import pytest
import torch

from src.training.patches import PatchDataset, enlarged_crop


def _pages(n=3, shape=(40, 56), seed=0):
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(n):
        clean = rng.random(shape).astype(np.float32)
        pages.append((clean * 0.5 + 0.25, clean))  # noisy is a pixelwise function of clean
    return pages


def _views(page: np.ndarray):
    """The page in each of the 8 orientations flips and 90-degree turns can produce."""
    out = []
    for k in range(4):
        r = np.rot90(page, k)
        out += [r, r[:, ::-1]]
    return out


def _is_crop_of(patch: np.ndarray, page: np.ndarray) -> bool:
    h, w = patch.shape
    windows = np.lib.stride_tricks.sliding_window_view(page, (h, w))
    return bool(np.any(np.all(windows == patch, axis=(-2, -1))))


def test_geometric_moves_noisy_and_clean_together():
    ds = PatchDataset(_pages(), patch_size=16, length=40, photometric=0.0, seed=1, flips=True)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == y.shape == (1, 16, 16) and x.dtype == torch.float32
        assert torch.allclose(x, y * 0.5 + 0.25, atol=1e-6), f"patch {i}: noisy and clean misaligned"


def test_flips_and_turns_happen_and_can_be_switched_off():
    pages = _pages(n=1)
    clean = pages[0][1]
    on = PatchDataset(pages, patch_size=16, length=60, seed=2, flips=True)
    oriented = [next(k for k, v in enumerate(_views(clean)) if _is_crop_of(on[i][1][0].numpy(), v))
                for i in range(len(on))]
    assert len(set(oriented)) == 8, f"only orientations {sorted(set(oriented))} of the 8 flips/turns occurred"
    off = PatchDataset(pages, patch_size=16, length=20, seed=2, flips=False)
    assert all(_is_crop_of(off[i][1][0].numpy(), clean) for i in range(len(off)))


def test_photometric_touches_the_input_only():
    pages = _pages()
    ds = PatchDataset(pages, patch_size=16, length=30, photometric=1.0, seed=3, flips=True)
    changed = 0
    for i in range(len(ds)):
        x, y = ds[i]
        assert any(_is_crop_of(y[0].numpy(), v) for _, c in pages for v in _views(c)), "target was altered"
        assert 0.0 <= x.min() and x.max() <= 1.0
        changed += not torch.allclose(x, y * 0.5 + 0.25, atol=1e-4)
    assert changed >= 20


def test_patches_are_reproducible_per_epoch_and_differ_between_epochs():
    a, b = (PatchDataset(_pages(), patch_size=16, length=8, photometric=0.5, seed=4) for _ in range(2))
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(8))
    b.set_epoch(1)
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(8))


def test_page_smaller_than_the_patch_is_reflect_padded():
    ds = PatchDataset(_pages(shape=(10, 12)), patch_size=16, length=4)
    x, y = ds[0]
    assert x.shape == (1, 16, 16) and torch.allclose(x, y * 0.5 + 0.25, atol=1e-6)


def test_no_pages_is_an_error():
    with pytest.raises(ValueError, match="no training pages"):
        PatchDataset([], patch_size=16, length=4)


def test_zoom_enlarges_noisy_and_clean_alike_by_the_factor_drawn():
    clean = np.tile(np.linspace(0, 1, 150, dtype=np.float32), (120, 1))   # a ramp, 1/149 a pixel
    noisy = clean * 0.5 + 0.25
    x, y = enlarged_crop(noisy, clean, 48, 3.0, np.random.default_rng(1))
    assert x.shape == y.shape and min(x.shape) >= 48
    np.testing.assert_allclose(x, y * 0.5 + 0.25, atol=1e-5)
    assert np.diff(y[:, 6:-6], axis=1).mean() == pytest.approx(1 / 149 / 3, rel=0.02)   # 3x as wide
    assert np.abs(np.diff(y, axis=0)).max() < 1e-6
    step = np.zeros((60, 60), np.float32)
    step[:, 30:] = 1
    big = enlarged_crop(step, step, 48, 2.5, np.random.default_rng(2))[0]
    assert 0 <= big.min() and big.max() <= 1   # the cubic's overshoot clipped
    as_bytes = enlarged_crop((noisy * 255).astype(np.uint8), (clean * 255).astype(np.uint8), 48, 2.0,
                             np.random.default_rng(3))
    assert all(a.dtype == np.uint8 for a in as_bytes)


def test_zoom_draws_its_share_of_patches_and_keeps_old_runs_unchanged():
    pages = _pages(shape=(64, 64))
    plain, zero = PatchDataset(pages, patch_size=16, length=30, seed=5), PatchDataset(
        pages, patch_size=16, length=30, seed=5, zoom=0.0)
    assert all(torch.equal(plain[i][1], zero[i][1]) for i in range(30))
    # clean within [0.2, 0.8]: the cubic's overshoot is not clipped, so noisy stays 0.5 clean + 0.25
    pages = [(0.5 * (0.2 + 0.6 * c) + 0.25, 0.2 + 0.6 * c) for _, c in pages]
    zoomed = PatchDataset(pages, patch_size=16, length=60, seed=5, zoom=0.5, zoom_max=3.0)
    crops = sum(any(_is_crop_of(zoomed[i][1][0].numpy(), c) for _, c in pages) for i in range(60))
    assert 15 <= crops <= 45   # about half the patches are plain crops, the rest enlarged
    for i in range(60):
        x, y = zoomed[i]
        assert torch.allclose(x, y * 0.5 + 0.25, atol=1e-5)
