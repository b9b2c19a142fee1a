"""The benchmark commands README and docs/ print run and print the lines docs/ quotes (tiny settings)."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT, identity_checkpoint, repeated_texts

BENCH = PROJECT / "benchmarks"


def bench(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def load(script: str):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_prints_patches_per_second():
    out = bench("bench_throughput.py", "--preset", "smoke", "--steps", "2", "--device", "cpu",
                "--threads", "1")
    assert out.returncode == 0, out.stderr
    m = re.search(r"^smoke cpu \(.*1 of \d+ cores\): ([\d.]+) patches/s of 48px, batch 4, amp \w+$",
                  out.stdout, re.M)
    assert m and float(m.group(1)) > 0, out.stdout


def test_throughput_experiments_sampling_profile_and_no_amp():
    tiny = ["--preset", "smoke", "--steps", "2", "--device", "cpu"]
    out = bench("bench_throughput.py", *tiny, "--threads", "1", "--no-amp", "--profile", "--sampling",
                "--workers", "1", "--batch-size", "2")
    assert out.returncode == 0, out.stderr
    rate = r"^smoke patch sampling: \d+ batches/s of 2 x 48px"
    assert re.search(rate + r".*main process$", out.stdout, re.M), out.stdout
    workers = re.search(rate + r".* 1 workers: main process CPU [\d.]+ ms per batch$", out.stdout, re.M)
    assert workers, out.stdout
    assert "Self CPU time total" in out.stdout and re.search(r"batch 2, amp off$", out.stdout, re.M)
    graph = bench("bench_throughput.py", *tiny, "--cuda-graph")
    assert graph.returncode == 1 and "--cuda-graph needs --device cuda" in graph.stderr
    fp16 = bench("bench_throughput.py", *tiny, "--fp16")
    assert fp16.returncode == 1 and "--fp16 needs --device cuda" in fp16.stderr


@pytest.mark.slow
def test_denoiser_benchmark_scores_the_held_out_pages(tmp_path, synthetic_dir):
    out = bench("bench_denoiser.py", "--preset", "smoke", "--data-dir", str(synthetic_dir),
                "--", "--models-dir", str(tmp_path / "models"), "--threads", "1")
    assert out.returncode == 0, out.stderr
    m = re.search(r"^smoke: held-out RMSE ([\d.]+), training (\d+) s \(wall (\d+) s\)$", out.stdout, re.M)
    assert m, out.stdout
    assert 0 < float(m.group(1)) < 0.5 and int(m.group(2)) <= int(m.group(3))
    assert (tmp_path / "models" / "denoiser_best.pt").is_file()


def bench_main(monkeypatch, script: str, *args: str, module=None) -> int:
    """script's main() in this process (no second torch import): its exit code."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as done:
        (module or load(script)).main()
    return done.value.code


def test_denoiser_benchmark_errors_are_one_line(monkeypatch, tmp_path, synthetic_dir, capsys):
    from src.models.checkpoints import make_checkpoint, save_checkpoint
    from src.models.registry import build_model

    args = ["--preset", "smoke", "--data-dir", str(synthetic_dir), "--", "--models-dir", str(tmp_path / "m")]
    assert bench_main(monkeypatch, "bench_denoiser.py", "--data-dir", str(tmp_path / "nowhere")) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: no such folder\n"
    assert bench_main(monkeypatch, "bench_denoiser.py", *args, "--init-from", str(tmp_path / "no.pt")) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'no.pt'}: checkpoint not found\n"
    save_checkpoint(tmp_path / "ae.pt", make_checkpoint(build_model("unet", width=16, depth=1),
                                                        kind="autoencoder", model_name="unet",
                                                        model_config={}, config={}))
    assert bench_main(monkeypatch, "bench_denoiser.py", *args, "--init-from", str(tmp_path / "ae.pt")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "use the same --width" in err and "Traceback" not in err
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert bench_main(monkeypatch, "bench_denoiser.py", *args, "--device", "cuda") == 1
    assert capsys.readouterr().err.startswith("error: --device cuda was requested but PyTorch sees no CUDA")


def test_denoiser_benchmark_ctrl_c_says_how_to_resume(monkeypatch, synthetic_dir, tmp_path, capsys):
    module = load("bench_denoiser.py")

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    monkeypatch.setattr(module, "ROOT", tmp_path)   # its checkpoints: tmp_path/.cache/bench_smoke/
    assert bench_main(monkeypatch, "bench_denoiser.py", "--preset", "smoke", "--data-dir",
                      str(synthetic_dir), module=module) == 130
    err = capsys.readouterr().err   # no epoch ended: the command to start again, without the --
    assert err.rstrip().endswith(f"start again with:\n  python -m benchmarks.bench_denoiser --preset smoke "
                                 f"--data-dir {synthetic_dir}"), err
    last = tmp_path / ".cache" / "bench_smoke" / "denoiser_last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"an epoch's checkpoint")
    monkeypatch.setattr("src.training.loop.load_checkpoint", lambda *args: {})   # no real run's: not read,
    monkeypatch.setattr("src.training.loop.check_resume", lambda *args: None)   # nor compared with the flags
    # an earlier run's checkpoint is offered to --resume only (run_training); given, not repeated
    for extra, resume in ([], ""), (["--", "--resume"], " -- --resume"):
        assert bench_main(monkeypatch, "bench_denoiser.py", "--preset", "smoke", "--data-dir",
                          str(synthetic_dir), *extra, module=module) == 130
        err = capsys.readouterr().err
        assert "interrupted" in err and "Traceback" not in err, err
        assert err.rstrip().endswith(f"python -m benchmarks.bench_denoiser --preset smoke --data-dir "
                                     f"{synthetic_dir}{resume}"), err


@pytest.mark.parametrize("pages", ["0", "-1"])
def test_writer_benchmark_refuses_fewer_than_one_page(monkeypatch, pages, capsys):
    assert bench_main(monkeypatch, "bench_writer.py", "--pages", pages) == 2
    assert f"error: --pages {pages}: must be at least 1" in capsys.readouterr().err


def test_plateau_change_is_the_last_quarters_relative_fall():
    plateau_change = load("bench_autoencoders.py").plateau_change
    history = [{"test_mse": v} for v in [1.0, 0.5, 0.4, 0.39, 0.38, 0.38, 0.40, 0.37]]
    change, q = plateau_change(history)
    assert q == 2 and change == pytest.approx((0.38 - 0.37) / 0.37)       # from epoch 6 to epoch 8
    assert plateau_change(history[:3]) == pytest.approx(((0.5 - 0.4) / 0.4, 1))
    assert plateau_change([{"test_mse": 0.2}, {"test_mse": 0.25}])[0] < 0     # rising: negative


@pytest.mark.slow
def test_autoencoder_benchmark_prints_its_table_row(tmp_path, mnist_dir):
    out = bench("bench_autoencoders.py", "--variant", "base", "--preset", "smoke", "--data", str(mnist_dir),
                "--threads", "1", "--out", str(tmp_path))
    assert out.returncode in (0, 1), out.stderr        # 1: a target missed, which smoke may well do
    row = out.stdout.strip().splitlines()[-1]
    assert row.startswith("| base | smoke (2 x 3 x 16, 8) | 1 | "), row
    assert re.search(r"\| plateau (ok|MISSED), time ok, MSE (ok|MISSED) \|$", row), row
    assert (out.returncode == 0) == ("MISSED" not in row)
    assert (tmp_path / "models" / "mnist_base.pt").is_file()


def test_writer_benchmark_reports_its_speedup():
    out = bench("bench_writer.py", "--pages", "2")
    assert out.returncode == 0, out.stderr
    assert "same ids" in out.stdout
    m = re.search(r"^writer speedup ([\d.]+)x, peak (\d+) MB$", out.stdout, re.M)
    assert m and float(m.group(1)) > 0 and int(m.group(2)) > 0, out.stdout


def test_ensemble_benchmark_scores_each_checkpoint_and_their_average(tmp_path, synthetic_dir):
    import torch

    from src.models.checkpoints import make_checkpoint, save_checkpoint
    from src.models.registry import build_model
    paths = []
    for seed, split_seed in ((0, 0), (1, 0), (0, 1)):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"s{seed}_split{split_seed}.pt")
        save_checkpoint(paths[-1], make_checkpoint(
            build_model("unet", width=4, depth=1), kind="denoiser", model_name="unet",
            model_config=dict(width=4, depth=1), config=dict(val_fraction=0.34, split_seed=split_seed)))
    data = ["--data-dir", str(synthetic_dir)]
    out = bench("bench_ensemble.py", *map(str, [paths[0], paths[0], paths[1]]), *data)
    assert out.returncode == 0, out.stderr
    got = re.findall(r"^(.+): held-out RMSE ([\d.]+), with consensus [\d.]+ \(2 pages, [\d.]+ s\)$",
                     out.stdout, re.M)
    assert [name for name, _ in got] == [paths[0].name, paths[0].name, paths[1].name, "average of 3"]
    alone = [float(e) for _, e in got]
    assert alone[0] == alone[1] != alone[2] and alone[3] > 0
    assert "consensus: 2 pages, no two of the same text" in out.stdout   # its 2 held-out pages show 2 texts
    mixed = bench("bench_ensemble.py", str(paths[0]), str(paths[2]), *data)
    assert mixed.returncode == 2 and "held out different pages" in mixed.stderr
    moved = bench("bench_ensemble.py", str(paths[0]), "--shifts", "1", *data)   # make_submission's views
    assert moved.returncode == 0, moved.stderr
    assert float(re.search(r"held-out RMSE ([\d.]+)", moved.stdout)[1]) != alone[0]


def test_seen_text_arms_score_the_same_pages_on_equally_many_training_pages(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    arm_split = load("bench_seen_text.py").arm_split
    texts = [k % 12 for k in range(40)]   # 12 texts of 3-4 pages, interleaved
    (unseen, scored), (seen, scored_too) = arm_split(texts, "unseen"), arm_split(texts, "seen")
    assert scored == scored_too and len(unseen) == len(seen) and not set(scored) & set(unseen + seen)
    assert not {texts[i] for i in scored} & {texts[i] for i in unseen}
    assert {texts[i] for i in scored} <= {texts[i] for i in seen}


def test_seen_text_nearest_finds_the_twins_a_page_split_trains_on(tmp_path, synthetic_dir):
    data = repeated_texts(synthetic_dir, tmp_path / "data", noisy_is_clean=True)   # 3 texts of 2 pages
    got = {}
    for split_by in ("page", "text"):
        path = identity_checkpoint(tmp_path / f"{split_by}.pt", dict(val_fraction=0.2, split_by=split_by))
        out = bench("bench_seen_text.py", "--nearest", str(path), "--data-dir", str(data))
        assert out.returncode == 0, out.stderr
        got[split_by] = re.findall(r"^(test|held-out) pages: nearest clean training page at RMSE "
                                   r"([\d.]+)-([\d.]+) \((\d) pages\)$", out.stdout, re.M)
        # the fixture's test pages are 420 px tall, as are 4 of its training pages
    # by page the held-out page's twin is trained on: distance 0; by text it is held out too
    assert [(w, n) for w, _, _, n in got["page"]] == [("test", "2"), ("held-out", "1")]
    assert float(got["page"][1][2]) < 1e-4 < float(got["text"][1][1])
    assert [(w, n) for w, _, _, n in got["text"]] == [("test", "2"), ("held-out", "2")]
    assert all(float(low) > 0.01 for _, low, _, _ in got["page"][:1] + got["text"])
    from src.data.synthetic import make_synthetic_competition
    other = make_synthetic_competition(tmp_path / "sizes", 6, 2, seed=1)   # test pages 420 px, training 258
    out = bench("bench_seen_text.py", "--nearest", str(path), "--data-dir", str(other))
    assert ("test pages: nearest clean training page at RMSE - (2 pages; 2 with no training page of their "
            "size)") in out.stdout, out.stdout + out.stderr
