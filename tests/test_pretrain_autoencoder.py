import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from src.common.errors import CheckpointError
from src.mnist.config import AUTOENCODER_PRESETS, VARIANTS, AutoencoderConfig
from src.mnist.plots import pca_2d, pca_grid
from src.mnist.recipe import DigitDataset, model_config, run, showcase
from src.mnist.scores import code_sparsity, pixel_scores
from src.models.autoencoders import AUTOENCODERS, ConvAutoencoder, autoencoder_loss, kl_divergence
from src.models.blocks import Encoder
from src.models.checkpoints import init_encoder_from, load_checkpoint, load_model
from src.models.registry import MODELS, build_model
from src.models.unet import UNet
from src.pretrain_autoencoder import main

FIGURES = ["loss_curves.png", "accuracy_curves.png", "reconstructions_epoch1.png", "reconstructions_last.png",
           "code_space.png", "manifold.png"]


def smoke(tmp_path, data, **kw) -> AutoencoderConfig:
    values = {**AUTOENCODER_PRESETS["smoke"], "data": str(data), "models_dir": str(tmp_path / "models"),
              "results_dir": str(tmp_path / "results"), "threads": 1, **kw}
    return AutoencoderConfig(preset="smoke", **values)


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("name", sorted(AUTOENCODERS))
def test_shapes_and_registry(name):
    assert MODELS[name] is AUTOENCODERS[name]
    model = build_model(name, width=8, depth=2, code=5).eval()
    x = torch.rand(3, 1, 28, 28)
    recon, aux = model(x, with_code=True)
    assert model(x).shape == recon.shape == (3, 1, 28, 28) and aux["code"].shape == (3, 5)
    assert 0 <= recon.min() and recon.max() <= 1
    assert model.encode(x).shape == (3, 5) and model.decode(aux["code"]).shape == (3, 1, 28, 28)
    assert isinstance(model.encoder, Encoder)
    with pytest.raises(ValueError, match="expected images of 28x28, got \\(32, 32\\)"):
        model(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_encoder_keys_are_the_denoisers(depth):
    ae = build_model("ae_base", width=8, depth=depth)
    ae_keys = {k: v.shape for k, v in ae.state_dict().items() if k.startswith("encoder.")}
    unet = {k: v.shape for k, v in UNet(width=8, depth=3).state_dict().items() if k.startswith("encoder.")}
    assert ae_keys and all(unet[k] == s for k, s in ae_keys.items())
    if depth == 3:
        assert ae_keys == unet


@pytest.mark.parametrize("variant", ["base", "sparse", "vae"])
def test_default_autoencoder_fits_the_default_denoiser(variant):
    """What `pretrain_autoencoder` builds by default loads into what `train_denoiser` builds by default."""
    from src.training.config import DenoiserConfig

    cfg, dcfg = AutoencoderConfig(variant=variant), DenoiserConfig()
    ae = build_model(VARIANTS[variant], **model_config(cfg, 28))
    unet = build_model(dcfg.model, **dcfg.model_config()).state_dict()
    enc = {k: v.shape for k, v in ae.state_dict().items() if k.startswith("encoder.")}
    assert enc and all(k in unet and unet[k].shape == s for k, s in enc.items())


def test_sparse_penalty_positive_and_grows_with_l1():
    model = build_model("ae_sparse", width=8, code=6)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    small = autoencoder_loss(model, x, l1=1e-3)
    torch.manual_seed(0)
    large = autoencoder_loss(model, x, l1=1e-2)
    assert small["penalty"] > 0 and torch.isclose(large["penalty"], 10 * small["penalty"])
    assert torch.isclose(small["recon"], large["recon"]) and large["loss"] > small["loss"]
    assert autoencoder_loss(model, x, l1=0.0)["penalty"] == 0
    assert (model.eval().encode(x) >= 0).all()   # ReLU code: exact zeros are possible
    assert model.dropout.p == 0.1 and build_model("ae_base").dropout.p == 0


def test_vae_sampling_kl_and_eval_is_deterministic():
    model = build_model("vae", width=8, code=4).eval()
    g = torch.Generator().manual_seed(0)
    samples = model.sample(6, generator=g)
    assert samples.shape == (6, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), model(x))            # eval: decodes the mean
    assert not torch.equal(model.train()(x), model(x))  # train: reparameterised draw
    assert torch.allclose(kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))
    # KL(N(1, 1) || N(0, 1)) = 1/2 per unit
    assert torch.allclose(kl_divergence(torch.ones(1, 4), torch.zeros(1, 4)), torch.tensor([2.0]))
    parts = autoencoder_loss(model, x, kl_weight=0.5)
    assert parts["penalty"] > 0 and torch.isclose(parts["loss"], parts["recon"] + parts["penalty"])


def test_gradients_reach_every_parameter():
    for name in AUTOENCODERS:
        model = build_model(name, width=4, code=3)
        autoencoder_loss(model, torch.rand(2, 1, 28, 28), l1=1e-3)["loss"].backward()
        assert all(p.grad is not None for p in model.parameters()), name


def test_other_sizes_and_depths():
    model = ConvAutoencoder(width=4, depth=3, code=3, size=20)
    assert model(torch.rand(2, 1, 20, 20)).shape == (2, 1, 20, 20)


# ---------------------------------------------------------------- pieces of the command

def test_pixel_scores_and_sparsity_by_hand():
    x = np.array([[[0.0, 1.0], [0.6, 0.2]]])
    r = np.array([[[0.5, 0.5], [0.6, 0.8]]])
    s = pixel_scores(x, r)
    assert s["mse"] == pytest.approx((0.25 + 0.25 + 0 + 0.36) / 4)
    # 0 -> 0.5 right (neither is > 0.5), 1 -> 0.5 wrong, 0.6 -> 0.6 right, 0.2 -> 0.8 wrong
    assert s["acc"] == pytest.approx(2 / 4)
    codes = np.array([[0.0, 0.5, 0.001], [0.0, -0.2, 0.3]])
    assert code_sparsity(codes) == {"code_near_zero": pytest.approx(3 / 6), "dead_units": 1}


def test_pca_2d_finds_the_main_axis():
    rng = np.random.default_rng(0)
    codes = np.outer(rng.normal(size=200), [3.0, 4.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
    proj, ratio = pca_2d(codes)
    assert proj.shape == (200, 2) and ratio[0] > 0.99
    assert abs(np.corrcoef(proj[:, 0], codes[:, 0])[0, 1]) > 0.99


def test_pca_grid_spans_the_plane_of_the_two_main_axes():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 2000), rng.uniform(-1, 1, 2000)
    # axes e0 (spread 4) and e1 (spread 2) of a 5-unit code centred on `centre`; noise along e2
    centre = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    codes = centre + np.outer(4 * a, np.eye(5)[0]) + np.outer(2 * b, np.eye(5)[1]) \
        + np.outer(0.01 * rng.normal(size=2000), np.eye(5)[2])
    grid = pca_grid(codes, n=5, quantile=0.05)
    assert grid.shape == (25, 5)
    np.testing.assert_allclose(grid[:, 2:], np.broadcast_to(codes[:, 2:].mean(0), (25, 3)), atol=1e-3)
    rows = grid.reshape(5, 5, 5)
    x, y = rows[..., 0] - codes[:, 0].mean(), rows[..., 1] - codes[:, 1].mean()
    # PC1 (e0, up to the sample's small tilt) varies along a row, PC2 (e1) down a column, each over
    # its 5-95 % range
    assert np.ptp(x, axis=1) == pytest.approx(np.full(5, 0.9 * 8), rel=0.05) and np.ptp(x, axis=0).max() < 0.1
    assert np.ptp(y, axis=0) == pytest.approx(np.full(5, 0.9 * 4), rel=0.05) and np.ptp(y, axis=1).max() < 0.1
    assert x[0, 0] == pytest.approx(-x[0, -1], abs=0.2) and y[0, 0] == pytest.approx(-y[-1, 0], abs=0.1)
    # axes point along +e0 and +e1 whatever sign the SVD returns: PC1 grows rightwards, PC2 upwards
    assert x[0, 0] < 0 < x[0, -1] and y[-1, 0] < 0 < y[0, 0]
    # mirrored codes, mirrored grid
    np.testing.assert_allclose(pca_grid(-codes, n=5)[0], -grid[-1], atol=1e-6)


def test_dataset_is_deterministic_per_epoch():
    images, labels = np.random.rand(7, 28, 28).astype(np.float32), np.arange(7)
    ds = DigitDataset(images, labels, length=10, seed=3)
    first = [int(ds[i][1]) for i in range(10)]
    assert sorted(first[:7]) == list(range(7))      # one pass over every digit, then the next permutation
    ds.set_epoch(1)
    second = [int(ds[i][1]) for i in range(10)]
    ds.set_epoch(0)
    assert [int(ds[i][1]) for i in range(10)] == first != second
    assert ds[0][0].shape == (1, 28, 28)
    assert DigitDataset(images, labels, 10, seed=3, rank=1).order().tolist() != ds.order().tolist()


def test_showcase_takes_each_digit():
    labels = np.array([3, 1, 0, 1, 3, 2, 0])
    assert showcase(labels, 2).tolist() == [2, 1, 5, 0, 6, 3, 4]


# ---------------------------------------------------------------- the command

@pytest.mark.parametrize("variant", ["base", "sparse", "vae"])
def test_smoke_run_leaves_figures_metrics_and_checkpoints(tmp_path, mnist_dir, variant):
    logs = []
    result = run(smoke(tmp_path, mnist_dir, variant=variant), log=logs.append)
    out, models = tmp_path / "results" / variant, tmp_path / "models"
    for name in FIGURES + ["metrics.json", "metrics.md"] + (["samples.png"] if variant == "vae" else []):
        assert (out / name).stat().st_size > 0, name
    for name in (f"mnist_{variant}_best.pt", f"mnist_{variant}_last.pt", f"mnist_{variant}.pt"):
        ckpt = load_checkpoint(models / name, "autoencoder")
        assert ckpt["model_name"] == {"base": "ae_base", "sparse": "ae_sparse", "vae": "vae"}[variant]
    assert "optimizer" not in load_checkpoint(models / f"mnist_{variant}.pt")
    model, ckpt = load_model(models / f"mnist_{variant}.pt", "autoencoder")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28) and ckpt["config"]["variant"] == variant
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_mse", "test_acc", "code_near_zero", "dead_units", "probe_acc"):
        assert key in metrics and metrics[key] == metrics[key], key   # present and not NaN
    assert metrics["test_digits"] == 100 and 0 <= metrics["probe_acc"] <= 1
    assert f"| {variant} |" in (out / "metrics.md").read_text()
    row = result["history"][-1]
    assert {"score", "test_mse", "test_acc", "train_mse", "train_acc", "test_loss", "train_loss"} <= set(row)
    assert result["summary"] == logs[-1] and "linear probe" in logs[-1] and "test MSE" in logs[-1]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_training_learns(tmp_path, mnist_dir):
    cfg = smoke(tmp_path, mnist_dir, epochs=4, steps_per_epoch=10, lr=3e-3)
    hist = run(cfg, log=lambda *_: None)["history"]
    assert hist[-1]["test_mse"] < 0.7 * hist[0]["test_mse"] and hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, mnist_dir):
    reference = run(smoke(tmp_path / "a", mnist_dir, epochs=3), log=lambda *_: None)["history"]

    def stop_after_epoch_2(line):
        if line.startswith("epoch   2"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(smoke(tmp_path / "b", mnist_dir, epochs=3), log=stop_after_epoch_2)
    assert load_checkpoint(tmp_path / "b" / "models" / "mnist_base_last.pt")["epoch"] == 2
    logs = []
    resumed = run(smoke(tmp_path / "b", mnist_dir, epochs=3, resume=True), log=logs.append)["history"]
    assert any("resumed from" in line and "after epoch 2" in line for line in logs)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed[-1]["test_mse"] == pytest.approx(reference[-1]["test_mse"], rel=1e-5)


def test_named_run_keeps_its_own_results(tmp_path, mnist_dir):
    """--name puts figures and metrics in a folder of that name: the default run's stay as they were."""
    run(smoke(tmp_path, mnist_dir, epochs=1), log=lambda *_: None)
    base = tmp_path / "results" / "base"
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    result = run(smoke(tmp_path, mnist_dir, epochs=1, depth=2, name="base_d2"), log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before
    named = tmp_path / "results" / "base_d2"
    metrics = json.loads((named / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(tmp_path / "models" / "base_d2.pt")
    assert all((named / f).is_file() for f in FIGURES) and result["summary"].endswith(f"{named}/")
    with pytest.raises(ValueError, match="--name sparse: .*results/sparse/ holds the results of the default"):
        run(smoke(tmp_path, tmp_path / "no digits here", name="sparse"), log=lambda *_: None)   # before


def test_a_second_run_archives_the_first_runs_encoder_with_its_checkpoints(tmp_path, mnist_dir):
    """models/mnist_base.pt is what --init-from reads: a new run of that name moves it to archive/ with
    the checkpoints it came from, as every other trained model."""
    run(smoke(tmp_path, mnist_dir, epochs=1), log=lambda *_: None)
    first = (tmp_path / "models" / "mnist_base.pt").read_bytes()
    run(smoke(tmp_path, mnist_dir, epochs=1, seed=1), log=lambda *_: None)
    kept = sorted(p.name for p in (tmp_path / "models" / "archive").iterdir())
    assert len(kept) == 3 and any(n.startswith("mnist_base") and n.endswith(".pt") and "best" not in n
                                  and "last" not in n for n in kept), kept
    archived = next(p for p in (tmp_path / "models" / "archive").iterdir() if p.read_bytes() == first)
    assert archived.is_file() and (tmp_path / "models" / "mnist_base.pt").read_bytes() != first


def test_val_every_still_draws_epoch_1_and_stars_only_scored_epochs(tmp_path, mnist_dir, monkeypatch):
    """With --val-every 2 fit does not evaluate after epoch 1; its reconstructions are drawn all the same,
    from epoch 1's weights."""
    import src.mnist.recipe as pretrain
    import src.training.loop

    drawn, saved = [], {}
    draw, save = pretrain.draw_first_epoch, src.training.loop.save_checkpoint
    monkeypatch.setattr(pretrain, "draw_first_epoch", lambda model, *args: (
        drawn.append({k: v.clone() for k, v in model.state_dict().items()}), draw(model, *args))[1])
    # a checkpoint's CPU tensors are the live weights: copied as saved
    monkeypatch.setattr(src.training.loop, "save_checkpoint", lambda path, ckpt: (
        saved.setdefault(ckpt["epoch"], {k: v.clone() for k, v in ckpt["model"].items()}),
        save(path, ckpt))[1])
    logs = []
    run(smoke(tmp_path, mnist_dir, epochs=3, val_every=2), log=logs.append)
    assert (tmp_path / "results" / "base" / "reconstructions_epoch1.png").stat().st_size > 0
    assert len(drawn) == 1 and sorted(saved) == [1, 2, 3]
    for epoch, same in (1, True), (2, False):   # the weights epoch 1 ended with, not epoch 2's
        assert all(torch.equal(drawn[0][k], v) for k, v in saved[epoch].items()) == same, epoch
    epochs = [line for line in logs if line.startswith("epoch ")]
    assert len(epochs) == 3 and "val" not in epochs[0] and not epochs[0].endswith("*")
    assert "val" in epochs[1] and epochs[1].endswith(" *")


def test_checkpoint_initialises_the_denoiser(tmp_path, mnist_dir, synthetic_dir, capsys):
    from src.train_denoiser import main as train_denoiser

    run(smoke(tmp_path, mnist_dir, width=8), log=lambda *_: None)
    path = tmp_path / "models" / "mnist_base.pt"
    denoiser = build_model("unet", width=8, depth=3)
    loaded = init_encoder_from(denoiser, path)
    ae = load_checkpoint(path)["model"]
    assert loaded and all(k.startswith("encoder.downs.") or k.startswith("encoder.stem.") for k in loaded)
    assert all(torch.equal(denoiser.state_dict()[k], ae[k]) for k in loaded)
    with pytest.raises(CheckpointError, match=r"pretrained with --width 8, this model has --width 16\); "
                       r"use the same --width as the pretraining "
                       r"\(--width 8 here, or pretrain with --width 16\)"):
        init_encoder_from(build_model("unet", width=16), path)
    # and through the command line of the denoiser
    args = ["--preset", "smoke", "--data-dir", str(synthetic_dir), "--models-dir", str(tmp_path / "d"),
            "--val-fraction", "0.34", "--epochs", "1", "--threads", "1", "--init-from", str(path)]
    assert train_denoiser([*args, "--width", "8"]) == 0
    # the smoke denoiser (depth 2) takes the stem and level 1 of this depth-1 autoencoder
    assert (f"encoder initialised from {path} (8 of its 8 encoder tensors: the stem and level 1; "
            f"this model's level 2 starts random: the autoencoder has --depth 1, this model --depth 2)"
            ) in capsys.readouterr().out
    assert train_denoiser([*args, "--width", "16"]) == 1


def test_command_line_errors(tmp_path, mnist_dir, capsys):
    nowhere = str(tmp_path / "nowhere")
    assert main(["--preset", "smoke", "--data", nowhere, "--models-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "nowhere: no such file or folder" in err
    assert "python -m src.download --competition digit-recognizer" in err
    with pytest.raises(SystemExit) as exit_:
        main(["--preset", "smoke", "--variant", "deep", "--data", str(mnist_dir)])
    assert exit_.value.code == 2
    assert "--variant deep: choose one of: base, sparse, vae" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--preset", "smoke", "--no-such-flag", "1"])


@pytest.mark.slow
def test_torchrun_two_cpu_processes_then_single_process_use(tmp_path, mnist_dir):
    """Data-parallel pretraining (gloo); its checkpoint resumes in, and starts, single-process runs."""
    project = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"}
    cfg = smoke(tmp_path, mnist_dir)
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--nproc_per_node=2", "-m", "src.pretrain_autoencoder",
                          "--preset", "smoke", "--device", "cpu", "--data", str(mnist_dir),
                          "--models-dir", cfg.models_dir, "--results-dir", cfg.results_dir],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("base: test MSE") == 1          # rank 0 alone reports
    for name in FIGURES + ["metrics.json"]:
        assert (tmp_path / "results" / "base" / name).is_file(), name
    assert load_checkpoint(tmp_path / "models" / "mnist_base_last.pt", "autoencoder")["epoch"] == 2
    logs = []
    resumed = run(smoke(tmp_path, mnist_dir, epochs=3, resume=True), log=logs.append)["history"]
    assert any("after epoch 2" in line for line in logs) and [r["epoch"] for r in resumed] == [1, 2, 3]
    assert init_encoder_from(build_model("unet", width=8, depth=3), tmp_path / "models" / "mnist_base.pt")
