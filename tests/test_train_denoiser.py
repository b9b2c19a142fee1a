import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch

from src.models.checkpoints import load_checkpoint, load_model, make_checkpoint, save_checkpoint
from src.models.registry import build_model
from src.train_denoiser import main
from src.training import denoiser as train_denoiser
from src.training import loop as train
from src.training.config import DENOISER_PRESETS, DenoiserConfig
from src.training.denoiser import run
from tests.conftest import repeated_texts

PROJECT = Path(__file__).resolve().parents[1]


def smoke(tmp_path, data_dir, **kw) -> DenoiserConfig:
    values = {**DENOISER_PRESETS["smoke"], "data_dir": str(data_dir), "models_dir": str(tmp_path / "models"),
              "val_fraction": 0.34, **kw}
    return DenoiserConfig(**{"preset": "smoke", **values})


def test_smoke_run_leaves_checkpoints_plots_and_summary(tmp_path, synthetic_dir):
    logs = []
    result = run(smoke(tmp_path, synthetic_dir), log=logs.append)
    models = tmp_path / "models"
    for name in ("denoiser_best.pt", "denoiser_last.pt", "denoiser_curves.png", "denoiser_val_page.png"):
        assert (models / name).stat().st_size > 0, name
    ckpt = load_checkpoint(models / "denoiser_best.pt", "denoiser")
    assert ckpt["config"]["preset"] == "smoke" and ckpt["epoch"] >= 1 and "optimizer" in ckpt
    assert len(ckpt["history"]) >= 1 and "score" in ckpt["history"][-1]
    assert "best validation RMSE" in result["summary"] and "SSIM" in result["summary"]
    assert "squared error by clean-pixel class" in result["summary"] and "white near ink" in result["summary"]
    model, _ = load_model(models / "denoiser_best.pt")
    assert model(torch.rand(1, 1, 30, 40)).shape == (1, 1, 30, 40)


def test_the_curves_show_every_epoch_not_only_those_up_to_the_best(tmp_path, synthetic_dir, monkeypatch):
    drawn, scores = [], iter([0.5, 0.3, 0.4, 0.6])   # the best at epoch 2 of 4
    monkeypatch.setattr(train_denoiser, "plot_training_curves", lambda history, path: drawn.append(history))
    monkeypatch.setattr(train_denoiser, "make_evaluate", lambda *args: lambda model: {"score": next(scores)})
    result = run(smoke(tmp_path, synthetic_dir, epochs=4, threads=1), log=lambda *_: None)
    assert load_checkpoint(result["best_path"], "denoiser")["epoch"] == 2   # its history ends there
    assert [r["epoch"] for r in drawn[0]] == [1, 2, 3, 4]


def test_a_fresh_run_archives_the_earlier_runs_checkpoints(tmp_path, synthetic_dir):
    """A second run with the same --name must not silently replace the first one's trained model."""
    models = tmp_path / "models"
    run(smoke(tmp_path, synthetic_dir, epochs=1), log=lambda *_: None)
    first = {n: (models / f"denoiser_{n}.pt").read_bytes() for n in ("best", "last")}
    logs = []
    run(smoke(tmp_path, synthetic_dir, epochs=1, seed=1), log=logs.append)
    archived = sorted((models / "archive").iterdir())
    assert [p.name.split(".")[0] for p in archived] == ["denoiser_best", "denoiser_last"]
    assert [p.read_bytes() for p in archived] == [first["best"], first["last"]]
    assert (models / "denoiser_last.pt").read_bytes() != first["last"]   # the new run's own
    assert any(f"moved to {models / 'archive'}/" in line and "--resume" in line for line in logs)


def test_training_lowers_validation_rmse(tmp_path, synthetic_dir):
    """A short real run must beat the untrained model: learning, not just running."""
    cfg = smoke(tmp_path, synthetic_dir, epochs=4, steps_per_epoch=8, batch_size=8, patch_size=64, lr=3e-3)
    hist = run(cfg, log=lambda *_: None)["history"]
    assert hist[-1]["score"] < hist[0]["score"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_loader_workers_draw_the_same_patches_as_the_main_process(tmp_path, synthetic_dir):
    """Patches are seeded by (seed, epoch, rank, index), and fresh workers each epoch see set_epoch."""
    runs = [run(smoke(tmp_path / str(w), synthetic_dir, workers=w, val_fraction=0.0), log=lambda *_: None)
            for w in (0, 2)]
    main_process, workers = (load_checkpoint(r["last_path"])["model"] for r in runs)
    assert all(torch.equal(v, workers[k]) for k, v in main_process.items())


def test_no_validation_trains_on_every_pair(tmp_path, synthetic_dir):
    result = run(smoke(tmp_path, synthetic_dir, val_fraction=0.0), log=lambda *_: None)
    assert "no validation" in result["summary"] and result["best_path"].exists()


def test_bad_data_dir_and_init_from_errors(tmp_path, synthetic_dir, capsys):
    assert main(["--preset", "smoke", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: no such folder" in capsys.readouterr().err
    save_checkpoint(tmp_path / "ae.pt", make_checkpoint(build_model("unet", width=16, depth=1),
                                                        kind="autoencoder", model_name="unet",
                                                        model_config={}, config={}))
    rc = main(["--preset", "smoke", "--data-dir", str(synthetic_dir), "--models-dir", str(tmp_path / "m"),
               "--init-from", str(tmp_path / "ae.pt")])
    assert rc == 1 and "use the same --width" in capsys.readouterr().err


def test_resume_does_not_read_the_init_from_file(tmp_path, synthetic_dir):
    """The checkpoint replaces the encoder --init-from would load: a moved MNIST file must not stop it."""
    run(smoke(tmp_path, synthetic_dir, epochs=1), log=lambda *_: None)
    logs = []
    gone = tmp_path / "moved_away.pt"
    result = run(smoke(tmp_path, synthetic_dir, epochs=2, resume=True, init_from=str(gone)), log=logs.append)
    assert result["history"][-1]["epoch"] == 2
    assert f"--init-from {gone} not read: --resume continues from" in "\n".join(logs)


@pytest.mark.parametrize("bad", [["--model", "vae"], ["--model", "nope"], ["--loss", "l2"]])
def test_unknown_model_or_loss_lists_choices_before_any_data(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_:   # the data folder does not exist: parsing fails first
        main(["--preset", "smoke", *bad, "--data-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{' '.join(bad)}: choose one of:" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="choose one of"):   # built in Python: the same check in run
        run(smoke(tmp_path, tmp_path / "none", **{bad[0][2:]: bad[1]}))


def _cmd(data_dir, models_dir, *extra):
    return [sys.executable, "-m", "src.train_denoiser", "--preset", "smoke", "--data-dir", str(data_dir),
            "--models-dir", str(models_dir), "--epochs", "4", "--steps-per-epoch", "6",
            "--val-fraction", "0.34", "--threads", "1", *extra]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, synthetic_dir):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    subprocess.run(_cmd(synthetic_dir, tmp_path / "a"), cwd=PROJECT, env=env, check=True, capture_output=True)
    reference = load_checkpoint(tmp_path / "a" / "denoiser_last.pt")

    last = tmp_path / "b" / "denoiser_last.pt"
    proc = subprocess.Popen(_cmd(synthetic_dir, tmp_path / "b"), cwd=PROJECT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_checkpoint(last)["epoch"] >= 1:
            break
        time.sleep(0.05)
    killed_at = load_checkpoint(last)["epoch"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed_at < 4, "the run finished before it could be killed; make it longer"
    out = subprocess.run(_cmd(synthetic_dir, tmp_path / "b", "--resume"), cwd=PROJECT, env=env,
                         capture_output=True, text=True, check=True)
    assert f"resumed from {last} after epoch" in out.stdout
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 4
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    assert abs(resumed["history"][-1]["score"] - reference["history"][-1]["score"]) < 1e-4
    assert not list((tmp_path / "b").glob(".*.tmp"))


def test_seed_changes_training_but_not_the_held_out_pages(tmp_path, synthetic_dir, monkeypatch):
    import src.training.denoiser as td
    held_out, split_pages = [], td.split_pages

    def recording_split(*args):
        train, val = split_pages(*args)
        held_out.append(list(val))
        return train, val

    monkeypatch.setattr(td, "split_pages", recording_split)
    runs = [run(smoke(tmp_path / str(i), synthetic_dir, epochs=1, **kw), log=lambda *_: None)
            for i, kw in enumerate([{}, {"seed": 1}, {"split_seed": 1}])]
    assert held_out[0] == held_out[1] != held_out[2]
    weights = [load_checkpoint(r["last_path"])["model"] for r in runs]
    assert any(not torch.equal(v, weights[1][k]) for k, v in weights[0].items())   # --seed: other weights


def test_split_by_text_holds_out_every_page_of_a_text(tmp_path, synthetic_dir):
    data = repeated_texts(synthetic_dir, tmp_path / "data")   # 3 texts of 2 pages each, as the competition's
    for split_by, held, matched in (
            ("text", "2 validation pages of 1 text, 0", "2 pages, 2 of them showing 1 text of 2 pages each"),
            ("page", "1 validation page of 1 text, 1", "1 page, no two of the same text")):
        logs = []
        result = run(smoke(tmp_path / split_by, data, split_by=split_by, epochs=1, val_fraction=0.2),
                     log=logs.append)
        assert f"split by {split_by}: {held} of them also on training pages" in "\n".join(logs)
        assert load_checkpoint(result["best_path"])["config"]["split_by"] == split_by
        # held-out pages matched from their predictions alone, as make_submission matches test pages
        summary = result["summary"]
        assert "with make_submission's consensus (but without its shifted views): " in summary
        assert matched in summary


def test_resume_refuses_changed_training_flags_and_may_add_epochs(tmp_path, synthetic_dir, monkeypatch):
    run(smoke(tmp_path, synthetic_dir, val_fraction=0.0), log=lambda *_: None)
    last = tmp_path / "models" / "denoiser_last.pt"
    before = last.read_bytes()
    for change, said in ((dict(width=16), "--width 8 (now: --width 16)"), (dict(lr=2e-3), "--lr 0.001"),
                         (dict(flips=True), "--no-flips (now: --flips)"),
                         (dict(preset="quick", width=16), "values (it was trained with --preset smoke)")):
        with pytest.raises(ValueError, match="--resume: .* was trained with") as e:
            run(smoke(tmp_path, synthetic_dir, val_fraction=0.0, resume=True, **change), log=lambda *_: None)
        assert said in str(e.value) and "new --name" in str(e.value)
    assert last.read_bytes() == before  # refused before anything was written
    logs, lrs, step = [], [], train.train_step

    def spy(net, model, batch, loss_fn, opt, *args):
        lrs.append(opt.param_groups[0]["lr"])
        return step(net, model, batch, loss_fn, opt, *args)
    monkeypatch.setattr(train, "train_step", spy)
    cfg = smoke(tmp_path, synthetic_dir, val_fraction=0.0, resume=True, epochs=3, threads=1)
    result = run(cfg, log=logs.append)
    assert any("--epochs 3 (checkpoint: 2): the cosine schedule now ends at epoch 3" in m for m in logs), logs
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    # the new schedule from the first step: not the 0 that ended the 2-epoch run
    factor = train.warmup_cosine(3 * cfg.steps_per_epoch, int(cfg.warmup_epochs * cfg.steps_per_epoch))
    want = [cfg.lr * factor(2 * cfg.steps_per_epoch + i) for i in range(cfg.steps_per_epoch)]
    assert lrs == pytest.approx(want) and lrs[0] > 0


def test_command_refuses_a_changed_resume_before_loading_data(tmp_path, synthetic_dir, capsys):
    run(smoke(tmp_path, synthetic_dir, epochs=1), log=lambda *_: None)
    args = ["--preset", "smoke", "--data-dir", str(synthetic_dir), "--models-dir", str(tmp_path / "models"),
            "--val-fraction", "0.34", "--resume", "--lr", "0.01"]
    capsys.readouterr()
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""    # no run header, no data message: the refusal is the only thing said
    assert err.startswith("error: --resume: ") and "--lr 0.001 (now: --lr 0.01)" in err
