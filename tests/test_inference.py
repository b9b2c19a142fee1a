import numpy as np
import pytest
import torch
from torch import nn

from src.inference.tiles import SHIFTS, predict_page, ramp, tile_starts
from src.models.registry import build_model


class Identity(nn.Module):
    def forward(self, x):
        return x.clone()


class Offset(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, x):
        return x * 0 + self.v


@pytest.mark.parametrize("shape", [(420, 540), (258, 540), (37, 53), (100, 100)])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (128, 32), (512, 32), (50, 30)])
def test_identity_model_returns_page_exactly(shape, tile, overlap, rng):
    page = rng.random(shape, dtype=np.float32)
    out = predict_page(Identity(), page, tile=tile, overlap=overlap, batch_size=3)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out, page)


def test_identity_with_tta():
    page = np.random.default_rng(1).random((70, 90), dtype=np.float32)
    assert np.array_equal(predict_page(Identity(), page, tile=32, overlap=8, tta=True), page)


def test_tiles_cover_page():
    for length, tile, overlap in [(540, 128, 32), (258, 128, 32), (100, 200, 10), (129, 128, 0)]:
        starts = tile_starts(length, tile, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + min(tile, length)] = True
        assert covered.all() and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_ramp_positive_and_symmetric():
    w = ramp(64, 16)
    assert (w > 0).all() and np.allclose(w, w[::-1]) and w[32] == 1.0


def test_ensemble_averages_models_and_clamps():
    page = np.full((40, 40), 0.5, np.float32)
    out = predict_page([Offset(0.2), Offset(0.6)], page, tile=16, overlap=4)
    np.testing.assert_allclose(out, 0.4, atol=1e-6)
    assert predict_page(Offset(1.7), page).max() == 1.0


class Flipped(nn.Module):
    """Sees which way up a tile is: its output depends on the flip TTA applies."""

    def forward(self, x):
        return x * 0 + x[..., :1, :1]


def test_views_are_each_model_under_each_flip_and_average_to_the_prediction(rng):
    page = rng.random((40, 60), dtype=np.float32)
    models = [Offset(0.2), Flipped(), Offset(1.5)]
    pred, views = predict_page(models, page, tile=32, overlap=8, tta=True, views=True)
    assert views.shape == (12, 40, 60) and views.dtype == np.float32
    assert np.array_equal(pred, predict_page(models, page, tile=32, overlap=8, tta=True))
    np.testing.assert_allclose(views[:4], 0.2, atol=1e-6)
    assert (views[8:] == 1).all()                   # each view clamped to [0, 1]
    corners = views[4:8, 0, 0]                      # the tile's first pixel, read after each flip
    assert len(set(corners.tolist())) == 4
    _, one = predict_page(Offset(0.3), page, views=True)
    assert one.shape == (1, 40, 60)


class Rows(nn.Module):
    """Sees where a pixel lies in what it is given: 1 on odd rows, 0 on even ones."""

    def forward(self, x):
        return x * 0 + (torch.arange(x.shape[-2]) % 2).to(x.dtype)[:, None]


@pytest.mark.parametrize("shape", [(40, 60), (2, 3), (1, 1)])
def test_shifted_views_of_an_identity_model_are_the_page(shape, rng):
    page = rng.random(shape, dtype=np.float32)
    pred, views = predict_page(Identity(), page, tta=True, shifts=len(SHIFTS), views=True)
    assert views.shape == (4 * (1 + len(SHIFTS)), *shape)
    assert np.array_equal(pred, page) and (views == page).all()


def test_each_shift_moves_the_page_down_and_right_and_back(rng):
    page = rng.random((40, 60), dtype=np.float32)
    pred, views = predict_page(Rows(), page, shifts=len(SHIFTS), views=True)   # one tile: rows of the page
    rows = np.arange(40)[:, None]
    for view, (dy, _) in zip(views, ((0, 0), *SHIFTS)):   # pixel i was row i + dy of the moved page
        assert np.array_equal(view, np.broadcast_to((rows + dy) % 2, view.shape))
    assert np.array_equal(pred, views.mean(0))
    assert np.array_equal(predict_page(Rows(), page, shifts=1), views[:2].mean(0))


@pytest.mark.parametrize("shifts", [-1, len(SHIFTS) + 1])
def test_shifts_out_of_range_are_refused(shifts):
    with pytest.raises(ValueError, match=f"shifts={shifts}"):
        predict_page(Identity(), np.zeros((8, 8), np.float32), shifts=shifts)


def test_tiled_matches_whole_page_for_real_unet():
    """Blended tiles of a conv net stay close to one whole-page pass (no visible seams)."""
    torch.manual_seed(0)
    model = build_model("unet", width=8, depth=2).eval()
    page = np.random.default_rng(2).random((96, 130), dtype=np.float32)
    whole = predict_page(model, page, tile=512)
    tiled = predict_page(model, page, tile=64, overlap=24)
    assert np.abs(whole - tiled).mean() < 0.02


@pytest.mark.parametrize("tile,overlap", [(0, 0), (16, -1), (16, 16), (16, 40)])
def test_bad_tiling_is_refused_not_run_for_hours(tile, overlap):
    """overlap >= tile used to mean a stride of 1 px: thousands of tiles a page."""
    page = np.zeros((100, 100), np.float32)
    with pytest.raises(ValueError, match="tile" if tile < 1 else "overlap"):
        tile_starts(100, tile, overlap)
    with pytest.raises(ValueError):
        predict_page(Identity(), page, tile=tile, overlap=overlap)


def test_zero_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size=0"):
        predict_page(Identity(), np.zeros((8, 8), np.float32), batch_size=0)


def test_page_side_shorter_than_the_overlap_still_works(rng):
    """A side shorter than the tile is clipped to one tile, whatever overlap the full tile has."""
    page = rng.random((8, 150), dtype=np.float32)
    assert np.array_equal(predict_page(Identity(), page, tile=64, overlap=32), page)
