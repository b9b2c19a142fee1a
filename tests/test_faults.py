"""Training faults: Ctrl-C, unwritable outputs, torchrun. (Kill/resume lives in test_train_denoiser.)"""
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from conftest import zip_competition
import pytest
import torch

from src.models.checkpoints import load_checkpoint
from src.train_denoiser import main

PROJECT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(PROJECT)}


def test_unwritable_models_dir_is_one_clear_line(tmp_path, synthetic_dir, capsys, monkeypatch):
    blocker = tmp_path / "models"
    blocker.write_text("a file, not a folder")

    def no_training(*_):
        raise RuntimeError("trained before finding that the checkpoints cannot be written")
    monkeypatch.setattr("src.training.loop.train_step", no_training)
    rc = main(["--preset", "smoke", "--data-dir", str(synthetic_dir), "--models-dir", str(blocker)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(f"error: cannot write to {blocker}") and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_keeps_last_epoch_and_says_how_to_resume(tmp_path, synthetic_dir):
    models = tmp_path / "m"
    cmd = [sys.executable, "-m", "src.train_denoiser", "--preset", "smoke", "--data-dir", str(synthetic_dir),
           "--models-dir", str(models), "--epochs", "50", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not (models / "denoiser_last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "denoiser_last.pt" in err and "Traceback" not in err
    assert load_checkpoint(models / "denoiser_last.pt")["epoch"] >= 1


@pytest.mark.slow
def test_torchrun_two_cpu_processes_then_submission(tmp_path, synthetic_dir):
    """From zips not yet extracted: rank 0 extracts them before the other rank lists the pages."""
    models, zips = tmp_path / "m", zip_competition(synthetic_dir, tmp_path / "zips")
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--nproc_per_node=2", "-m", "src.train_denoiser",
                          "--preset", "smoke", "--device", "cpu", "--data-dir", str(zips),
                          "--models-dir", str(models)],
                         cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr   # whole: a rank's own error comes before torchrun's summary
    assert "on cpu x2" in out.stdout and "best validation RMSE" in out.stdout
    assert sorted(p.name for p in (zips / "test").iterdir()) == sorted(
        p.name for p in (synthetic_dir / "test").iterdir())
    assert load_checkpoint(models / "denoiser_last.pt", "denoiser")["epoch"] == 2
    assert load_checkpoint(models / "denoiser_best.pt", "denoiser")["epoch"] in (1, 2)
    csv = tmp_path / "sub.csv"
    sub = subprocess.run([sys.executable, "-m", "src.make_submission",
                          "--checkpoint", str(models / "denoiser_best.pt"),
                          "--data-dir", str(synthetic_dir), "--out", str(csv)],
                         cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert sub.returncode == 0, sub.stderr[-2000:]
    from src.submission.reader import validate_submission
    assert validate_submission(csv, sample=synthetic_dir / "sampleSubmission.csv").ok


@pytest.mark.slow
def test_single_process_checkpoint_resumes_under_torchrun(tmp_path, synthetic_dir):
    """The other direction of the torchrun test above: a run started in one process goes on in two."""
    models = tmp_path / "m"
    args = ["-m", "src.train_denoiser", "--preset", "smoke", "--device", "cpu",
            "--data-dir", str(synthetic_dir), "--models-dir", str(models)]
    assert main(args[2:] + ["--threads", "1"]) == 0
    first = load_checkpoint(models / "denoiser_last.pt", "denoiser")
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--nproc_per_node=2", *args, "--resume", "--epochs", "3"],
                         cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr   # whole: a rank's own error comes before torchrun's summary
    assert "on cpu x2" in out.stdout and "resumed from" in out.stdout and "after epoch 2" in out.stdout
    assert "trained by 1 process, this run has 2: a step now takes 8 patches, not 4" in out.stdout
    last = load_checkpoint(models / "denoiser_last.pt", "denoiser")
    assert last["epoch"] == 3 and len(last["history"]) == 3 and last["world"] == 2
    assert last["history"][:2] == first["history"]      # the first two epochs carried over, not redone
    assert any(not torch.equal(v, first["model"][k]) for k, v in last["model"].items())
