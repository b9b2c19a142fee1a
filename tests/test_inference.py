from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from src.inference import tiles
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


def reference_predict_page():
    """predict_page as it was: fp32, each flip of each tile a forward pass (kept by the benchmark)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))   # the benchmark imports its sibling bench_denoiser
    try:
        spec = importlib.util.spec_from_file_location("bench_inference", bench / "bench_inference.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module.reference_predict_page


@pytest.fixture(scope="module")
def tiny_unets():
    torch.manual_seed(0)
    return [build_model("unet", width=8, depth=2, refine=4).eval(),
            build_model("unet", width=4, depth=1).eval()]


@pytest.mark.parametrize("tile,overlap,batch_size", [(1024, 32, 4), (48, 12, 3), (40, 8, 1), (64, 16, 16)])
def test_fp32_equals_the_reference_path(tiny_unets, tile, overlap, batch_size, rng):
    """Without amp, the page (one tile or several, shifts and several models included) is what the
    reference computes, one view a forward pass in fp32, to the bit."""
    page = rng.random((70, 90), dtype=np.float32)
    old = reference_predict_page()
    kw = dict(tile=tile, overlap=overlap, batch_size=batch_size, tta=True, shifts=len(SHIFTS), views=True)
    pred, views = predict_page(tiny_unets, page, **kw)
    want_pred, want_views = old(tiny_unets, page, **kw)
    assert views.shape == want_views.shape == (4 * 2 * (1 + len(SHIFTS)), 70, 90)
    assert np.array_equal(pred, want_pred) and np.array_equal(views, want_views)
    assert np.array_equal(predict_page(tiny_unets[0], page, tile=tile, overlap=overlap),
                          old(tiny_unets[0], page, tile=tile, overlap=overlap))


def test_amp_on_a_cpu_without_native_bf16_is_fp32(tiny_unets, monkeypatch, rng):
    page = rng.random((50, 70), dtype=np.float32)
    monkeypatch.setattr(tiles, "cpu_bf16", lambda: False)
    assert np.array_equal(predict_page(tiny_unets, page, tta=True, amp=True),
                          predict_page(tiny_unets, page, tta=True))


def test_bf16_only_on_a_cpu_with_amx(monkeypatch):
    """AVX512-BF16 alone made bf16 convolutions slower than fp32 ones; AMX's made them 3x as fast."""
    for amx in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        tiles.cpu_bf16.cache_clear()
        assert tiles.cpu_bf16() is (amx and torch.backends.mkldnn.is_available())
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")   # an older torch: fp32, no AttributeError
    tiles.cpu_bf16.cache_clear()
    assert tiles.cpu_bf16() is False
    tiles.cpu_bf16.cache_clear()


bf16_kernels = pytest.mark.skipif(not (torch.backends.mkldnn.is_available()
                                       and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                                  reason="oneDNN has no bf16 kernels on this CPU")


@bf16_kernels
def test_amp_on_a_bf16_cpu_runs_the_body_in_bf16_and_the_last_layer_in_fp32(tiny_unets, monkeypatch, rng):
    monkeypatch.setattr(tiles, "cpu_bf16", lambda: True)
    page = rng.random((50, 70), dtype=np.float32)
    fp32 = predict_page(tiny_unets, page, tta=True, shifts=1)
    mixed = predict_page(tiny_unets, page, tta=True, shifts=1, amp=True)
    assert mixed.dtype == np.float32 and 0 < np.abs(mixed - fp32).max() < 0.02
    for model in tiny_unets:   # the callers' models are left as they were
        assert not any(isinstance(m, tiles._Float32) for m in model.modules())
    x = torch.from_numpy(page)[None, None]
    for model, last in zip(tiny_unets, ("refine", "head")):
        copy = tiles._fp32_last_layer(model)
        seen = {}
        getattr(copy, last).layer.register_forward_hook(
            lambda m, i, o: seen.update(dtype=(i[0].dtype, o.dtype)))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = copy(x)
        assert seen["dtype"] == (torch.float32, torch.float32) and out.dtype == torch.float32
    # a model that is no U-Net has no known last layer: fp32 whole, so an identity stays exact
    assert np.array_equal(predict_page(Identity(), page, tta=True, shifts=3, amp=True), page)


@pytest.mark.slow
def test_the_benchmark_times_both_paths_and_compares_them(tmp_path, synthetic_dir):
    import re
    import subprocess
    import sys

    from src.models.checkpoints import make_checkpoint, save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    config = dict(width=4, depth=1, refine=4)
    save_checkpoint(ckpt, make_checkpoint(build_model("unet", **config), kind="denoiser", model_name="unet",
                                          model_config=config, config={}))
    project = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(project / "benchmarks" / "bench_inference.py"), "--checkpoint", str(ckpt),
               "--data-dir", str(synthetic_dir), "--limit", "1", "--threads", "1"]
    out = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for path in ("reference", "current"):
        assert re.search(rf"^{path}: prediction [\d.]+ s, consensus [\d.]+ s, peak RSS [\d,]+ MB$",
                         out.stdout, re.M), out.stdout
        assert re.search(rf"^{path}: held-out RMSE \(1 pages\) [\d.]+, with consensus [\d.]+$", out.stdout,
                         re.M), out.stdout
    assert re.search(r"^largest pixel difference: [\d.e+-]+ as predicted, [\d.e+-]+ after consensus$",
                     out.stdout, re.M), out.stdout
    views = subprocess.run([*command, "--per-view"], cwd=project, capture_output=True, text=True, timeout=300)
    assert views.returncode == 0, views.stderr
    assert re.search(r"^  fp32: [\d.]+ a flip a pass, [\d.]+ four flips a pass$", views.stdout, re.M)
