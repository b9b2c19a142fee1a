"""Degraded pages for the general recipe: rendering, the cache (keys, reuse, atomic writes), the missing-
Augraphy message, and mixing the pages into training. Augraphy itself is needed by one test only."""
import functools
import importlib.util
from pathlib import Path
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from src.common.config import parse_config
from src.common.errors import DataError
from src.data import degraded as dg
from src.training import denoiser as train_denoiser
from src.training.config import DENOISER_PRESETS, DenoiserConfig
from src.training.patches import PatchDataset
from tests.conftest import PROJECT

H, W = 64, 96


def page(seed: int = 0) -> np.ndarray:
    return dg.render_text_page(np.random.default_rng(seed), H, W)


def darken(clean, rng):
    """A stand-in for Augraphy: pixel-aligned, seeded, instant."""
    return (clean // 2 + rng.integers(0, 64, clean.shape)).astype(np.uint8)


def test_rendered_pages_are_black_text_on_white_and_seeded():
    a = page(0)
    assert a.shape == (H, W) and a.dtype == np.uint8 and a.max() == 255 and a.min() < 100
    assert np.array_equal(a, page(0)) and not np.array_equal(a, page(1))
    assert len(dg.font_files()) > 3


def test_a_cache_is_built_once_then_read(tmp_path):
    calls = []

    def counted(clean, rng):
        calls.append(1)
        return darken(clean, rng)

    sources = [page(5)]
    built = dg.degraded_pairs(tmp_path, 3, 0, sources, log=lambda *_: None, degrade=counted)
    assert len(calls) == 3 and len(list(tmp_path.glob("degraded-3-*.npz"))) == 1
    assert np.array_equal(built[0][1], sources[0])      # even pages: the sources, odd: rendered
    assert all(n.shape == c.shape and n.dtype == c.dtype == np.uint8 for n, c in built)
    logs = []
    again = dg.degraded_pairs(tmp_path, 3, 0, sources, log=logs.append, degrade=counted)
    assert len(calls) == 3 and logs == [f"degraded pages: 3 read from {next(tmp_path.glob('*.npz'))}"]
    assert all(np.array_equal(a, b) for pa, pb in zip(built, again) for a, b in zip(pa, pb))


def test_the_key_follows_the_settings_seed_and_sources(tmp_path):
    build = functools.partial(dg.degraded_pairs, tmp_path, log=lambda *_: None, degrade=darken)
    build(2, 0, [page(5)])
    build(2, 1, [page(5)])                   # another seed
    build(2, 0, [page(6)])                   # other clean pages (another split)
    build(3, 0, [page(5)])                   # more pages
    build(2, 0, [page(5) / np.float32(255)])   # the same pages as floats in [0, 1]: the same file
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_a_failed_build_leaves_no_cache_and_no_temporary_file(tmp_path, monkeypatch):
    def fails_late(clean, rng):
        if fails_late.calls == 1:
            raise RuntimeError("killed")
        fails_late.calls += 1
        return darken(clean, rng)
    fails_late.calls = 0
    with pytest.raises(RuntimeError):
        dg.degraded_pairs(tmp_path, 3, 0, [page()], log=lambda *_: None, degrade=fails_late)
    assert list(tmp_path.iterdir()) == []

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(OSError, match="cannot write"):
        dg.degraded_pairs(tmp_path, 2, 0, [page()], log=lambda *_: None, degrade=darken)
    assert list(tmp_path.iterdir()) == []


def test_missing_augraphy_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "augraphy", None)   # import augraphy raises ImportError
    with pytest.raises(DataError) as e:
        dg.degraded_pairs(tmp_path, 2, 0, [page()], log=lambda *_: None)
    message = str(e.value)
    assert "\n" not in message and "augraphy==8.2.6" in message and "pip install" in message
    assert list(tmp_path.iterdir()) == []      # refused before anything is built


def test_the_training_path_does_not_import_augraphy():
    """The Kaggle kernel bundles what training imports; Kaggle's image has no Augraphy."""
    code = "import sys, src.training.denoiser, src.train_denoiser; print('augraphy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_augraphy_degrades_without_moving_the_page():
    pytest.importorskip("augraphy")
    clean = page(3)
    for seed in range(4):
        noisy = dg.degrade_for_training(clean, np.random.default_rng(seed))
        assert noisy.shape == clean.shape and noisy.dtype == np.uint8
        assert np.array_equal(noisy, dg.degrade_for_training(clean, np.random.default_rng(seed)))


def test_sensor_faults_blur_grain_drop_pixels_and_compress_now_and_then_seeded():
    clean = page(5)
    outs = [dg.sensor_faults(clean, np.random.default_rng(seed)) for seed in range(60)]
    assert all(o.shape == clean.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[7], dg.sensor_faults(clean, np.random.default_rng(7)))
    changed = [np.abs(o.astype(int) - clean).mean() > 0.5 for o in outs]
    assert 0.5 < np.mean(changed) < 1, "most pages, not all, get a fault"
    # a flat paper page tells the faults apart: impulses reach 0, grain spreads the paper, blur does not
    paper = np.full((64, 64), 200, np.uint8)
    flat = [dg.sensor_faults(paper, np.random.default_rng(seed)) for seed in range(60)]
    assert any((f == 0).mean() > 0.002 for f in flat), "no salt and pepper"
    assert any(2 < f.std() < 60 for f in flat), "no grain"


def test_mixing_draws_the_share_asked_for_and_nothing_else_without_it():
    rng = np.random.default_rng(0)
    pages = [(rng.random((H, W), dtype=np.float32), rng.random((H, W), dtype=np.float32)) for _ in range(2)]
    extra = [(np.zeros((H, W), np.uint8), np.full((H, W), 255, np.uint8))]
    plain = PatchDataset(pages, 32, 20, seed=3)
    unused = PatchDataset(pages, 32, 20, seed=3, extra=extra, extra_share=0.0)
    assert all(np.array_equal(a, b) for i in range(20) for a, b in zip(plain[i], unused[i]))
    mixed = PatchDataset(pages, 32, 400, seed=3, extra=extra, extra_share=0.25)
    from_extra = [bool((x == 0).all() and (y == 1).all()) for x, y in (mixed[i] for i in range(400))]
    assert 0.18 < np.mean(from_extra) < 0.32
    x, y = next(mixed[i] for i in range(400) if from_extra[i])
    assert x.dtype == y.dtype == torch.float32


def test_a_share_per_epoch_stops_the_degraded_pages_when_it_is_zero():
    pages = [(np.full((H, W), 0.5, np.float32), np.full((H, W), 0.5, np.float32))]
    extra = [(np.zeros((H, W), np.uint8), np.full((H, W), 255, np.uint8))]
    data = PatchDataset(pages, 32, 100, extra=extra, extra_share=[0.5, 0.0])
    drawn = []
    for epoch in range(3):
        data.set_epoch(epoch)
        drawn.append(np.mean([bool((data[i][0] == 0).all()) for i in range(100)]))
    assert 0.35 < drawn[0] < 0.65 and drawn[1] == drawn[2] == 0
    cfg = DenoiserConfig(epochs=5, degraded=0.4, degraded_epochs=3, degraded_late=0.1)
    assert cfg.degraded_shares() == [0.4, 0.4, 0.4, 0.1, 0.1]
    assert DenoiserConfig(epochs=2, degraded=0.3).degraded_shares() == [0.3, 0.3]


def test_the_general_preset_mixes_degraded_pages_and_the_others_do_not(capsys):
    for preset in ("general", "general-long", "scans"):
        assert 0 < max(DenoiserConfig(**DENOISER_PRESETS[preset]).degraded_shares()) < 1
    for preset in ("smoke", "quick", "full"):
        assert set(DenoiserConfig(**DENOISER_PRESETS[preset]).degraded_shares()) == {0}
    # only the scans model learns enlarged text: the others are scored on the competition's 1x pages
    assert [DenoiserConfig(**DENOISER_PRESETS[p]).zoom > 0 for p in DENOISER_PRESETS] == [
        p == "scans" for p in DENOISER_PRESETS]
    with pytest.raises(SystemExit):   # no competition page left
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--degraded", "1"])
    assert "--degraded 1.0: must be at least 0 and below 1" in capsys.readouterr().err


def test_the_general_presets_write_where_denoise_looks_not_over_the_competition_model():
    from src.inference.scale import DEFAULT_CHECKPOINTS

    def name(*argv):
        return parse_config(DenoiserConfig, DENOISER_PRESETS, list(argv)).name

    names = {p: name("--preset", p) for p in DENOISER_PRESETS}
    assert names["quick"] == names["full"] == "denoiser"     # make_submission's and make demo's model
    for preset in ("general", "general-long", "scans"):
        assert names[preset] != "denoiser"
        assert Path("models", f"{names[preset]}_best.pt") in DEFAULT_CHECKPOINTS
    assert name("--preset", "general", "--name", "g2") == "g2"


def test_a_run_with_degraded_pages_trains_on_them(tmp_path, synthetic_dir):
    values = {**DENOISER_PRESETS["smoke"], "data_dir": str(synthetic_dir), "models_dir": str(tmp_path / "m"),
              "epochs": 1, "threads": 1, "degraded": 0.5, "degraded_pages": 3,
              "degraded_dir": str(tmp_path / "cache")}
    logs, made = [], []
    train_denoiser.run(DenoiserConfig(preset="smoke", **values), log=logs.append,
                       degrade=lambda clean, rng: made.append(clean.shape) or darken(clean, rng))
    assert len(made) == 3   # the pages are the given function's, not Augraphy's
    assert "50% of the patches from 3 degraded pages" in logs
    assert len(list((tmp_path / "cache").glob("degraded-3-*.npz"))) == 1


def bench(name: str = "bench_unseen_noise"):
    spec = importlib.util.spec_from_file_location(name, PROJECT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_edit_distance_and_plain_families():
    b = bench()
    assert b.edit_distance("kitten", "sitting") == 3 and b.edit_distance("", "abc") == 3
    assert b.edit_distance("abc", "abc") == 0 and b.edit_distance("ab", "ba") == 2
    clean = page(2)
    for name, family in b.PLAIN_FAMILIES.items():
        noisy = b.degrade(family, False, clean, np.random.default_rng(0))
        assert noisy.shape == clean.shape and 0 <= noisy.min() and noisy.max() <= 1, name
        assert np.abs(noisy - clean / 255).mean() > 0.005, name


@pytest.mark.parametrize("missing, flags, says", [
    ("pytesseract", [], "pip install pytesseract"),
    ("augraphy", ["--no-ocr"], "augraphy==8.2.6")])
def test_the_benchmark_says_what_to_install_in_one_line(missing, flags, says, tmp_path, monkeypatch, capsys):
    module = bench()
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.setattr(sys, "argv", ["bench_unseen_noise.py", "--data-dir", str(tmp_path), *flags])
    with pytest.raises(SystemExit) as e:
        module.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err


def test_the_benchmark_says_how_to_make_a_missing_model_and_refuses_no_pages(tmp_path, monkeypatch, capsys):
    module = bench()
    for flags, says in ((["--competition", str(tmp_path / "q.pt")],
                         "--competition " + str(tmp_path / "q.pt") + ": no such checkpoint; python -m "
                         "src.train_denoiser --preset quick --name quick makes it"),
                        (["--per-family", "0"], "--per-family must be at least 1")):
        monkeypatch.setattr(sys, "argv", ["bench_unseen_noise.py", "--data-dir", str(tmp_path), "--no-ocr",
                                          *flags])
        with pytest.raises(SystemExit) as e:
            module.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, err


def test_the_ceiling_benchmark_stops_before_training_on_what_is_missing(tmp_path, monkeypatch, capsys):
    module = bench("bench_unseen_ceiling")
    quick = tmp_path / "quick_best.pt"
    monkeypatch.setitem(sys.modules, "augraphy", None)
    for says in ("quick_best.pt: no such checkpoint", "augraphy==8.2.6"):
        monkeypatch.setattr(sys, "argv", ["bench_unseen_ceiling.py", "--data-dir", str(tmp_path),
                                          "--competition", str(quick), "--no-ocr"])
        with pytest.raises(SystemExit) as e:
            module.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, err
        quick.touch()   # then the checkpoint is there, and Augraphy is what is missing


def test_the_benchmark_cleans_as_denoise_does_when_asked(tmp_path, monkeypatch):
    """--as-denoise: each model cleans a degraded page through `clean_scan`, with the text size its
    checkpoint learnt, as `python -m src.denoise` would; otherwise at the page's own size."""
    from types import SimpleNamespace

    from src.models.checkpoints import load_checkpoint, save_checkpoint
    from tests.conftest import identity_checkpoint

    b = bench()
    paths = {}
    for name, size in (("competition", 12.0), ("general", 5.0)):
        paths[name] = identity_checkpoint(tmp_path / f"{name}.pt")
        save_checkpoint(paths[name], {**load_checkpoint(paths[name]), "text_size": size})
    calls = []
    real = b.clean_scan
    monkeypatch.setattr(b, "clean_scan", lambda models, pg, **kw: calls.append(kw) or real(models, pg, **kw))
    noisy = page(3) / np.float32(255)
    for as_denoise in (False, True):
        _, cleaners, _ = b.load_models(SimpleNamespace(as_denoise=as_denoise, keep_solid=as_denoise,
                                                       bilevel=False, **paths))
        outs = {name: clean(noisy) for name, clean in cleaners.items()}
        assert all(out.shape == noisy.shape for out in outs.values())
    assert [c["target"] for c in calls] == [12.0, 5.0] and all(c["tta"] and c["keep_solid"] for c in calls)
    _, cleaners, _ = b.load_models(SimpleNamespace(as_denoise=True, keep_solid=False, bilevel=True, **paths))
    assert set(np.unique(cleaners["competition"](noisy))) == {0, 1}   # black and white, as denoise --bilevel
    # the general checkpoint's letters are under half the page's: the page is shrunk to be cleaned,
    # so its cleaned copy is no longer the identity's
    assert np.abs(outs["general"] - noisy).mean() > np.abs(outs["competition"] - noisy).mean()


def one_model_bench(name: str, checkpoint, data_dir, monkeypatch, capsys, *flags: str) -> str:
    """What a benchmark of one model (bench_deskew.py, bench_photo.py) prints on 2 pages, without OCR."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--data-dir", str(data_dir), "--checkpoint",
                                      str(checkpoint), "--no-ocr", *flags])
    bench(name).main()
    return capsys.readouterr().out


def test_the_deskew_benchmark_finds_the_skew_of_turned_pages(tmp_path, synthetic_dir, monkeypatch, capsys):
    from tests.conftest import identity_checkpoint

    ckpt = identity_checkpoint(tmp_path / "id.pt")
    out = one_model_bench("bench_deskew", ckpt, synthetic_dir, monkeypatch, capsys, "--pages", "2")
    found = re.search(r"skew found on (\d) of 2 pages: off by ([\d.]+) degrees on average", out)
    assert found and int(found.group(1)) >= 1 and float(found.group(2)) < 0.5, out
    assert "A4 page at 300 dpi: skew found in" in out
    with pytest.raises(SystemExit) as e:
        one_model_bench("bench_deskew", tmp_path / "none.pt", synthetic_dir, monkeypatch, capsys)
    assert e.value.code == 2 and "none.pt: no such checkpoint" in capsys.readouterr().err


def test_the_photo_benchmark_finds_the_pages_in_their_photos(tmp_path, synthetic_dir, monkeypatch, capsys):
    from tests.conftest import identity_checkpoint

    ckpt = identity_checkpoint(tmp_path / "id.pt")
    out = one_model_bench("bench_photo", ckpt, synthetic_dir, monkeypatch, capsys, "--pages", "2")
    found = re.search(r"clean: outline found on 2 of 2 photos, its corners off by ([\d.]+) px", out)
    assert found and float(found.group(1)) < 12, out   # drawn in by 1 % of the page: about 5 px
    assert re.search(r"dirty: outline found on \d of 2 photos", out)


def test_the_benchmark_splits_the_error_into_text_and_paper_touched_hidden_or_not():
    b = bench()
    clean = np.ones((40, 40))
    clean[5:35, 5:7] = 0                          # a stroke under a watermark that hides it
    clean[5:35, 12:14] = 0                        # one that a fault lightens but leaves darker than the paper
    clean[5:35, 30:32] = 0                        # one the fault leaves alone
    noisy = clean.copy()
    noisy[:, :10] = 0.4                           # an opaque watermark
    noisy[5:35, 12:14] = 0.6                      # faded ink
    noisy[20, 20] = 0.0                           # a speck on the paper
    pred = clean.copy()
    pred[5:35, 5:7] = 1                           # hidden text left white,
    pred[5:35, 12:14] = 0.6                       # faded text left faded,
    pred[20, 20] = 0.5                            # the speck half removed,
    pred[0, 30] = 0.9                             # a shadow of a speck on untouched paper
    parts = b.error_parts(pred, clean, noisy)
    assert parts == pytest.approx([60, 60 * 0.36, 0, 0.25, 0.01])
    assert len(parts) == len(b.PARTS)
