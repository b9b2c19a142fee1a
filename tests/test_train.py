import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch

from src.common.errors import DeviceError
from src.common.files import atomic_write
from src.common.runtime import Runtime, amp_dtype, resolve_device
from src.training.loop import GradClip, PatchLoader, loader_workers, run_training, warmup_cosine
from src.training.losses import clipped_mse

PROJECT = Path(__file__).resolve().parents[1]


def test_clipped_mse_hand_computed():
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5])
    pred = torch.tensor([1.2, 0.9, -0.2, 0.1, 1.5, 0.5])
    # free: overshoot past white (1.2 vs 1) and past black (-0.2 vs 0); counted: -0.1, 0.1, 1.0, 0
    expected = (0.01 + 0.01 + 1.0) / 6
    assert clipped_mse(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_clipped_mse_bounds_the_scored_error_and_never_exceeds_mse():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(1000, generator=g) > 0.7).float()
    pred = torch.randn(1000, generator=g) * 0.1 + 0.5
    scored = ((pred.clamp(0, 1) - target) ** 2).mean().item()
    assert scored <= clipped_mse(pred, target).item() <= ((pred - target) ** 2).mean().item()
    inside = pred.clamp(0, 1)
    assert clipped_mse(inside, target).item() == pytest.approx(scored)


def test_overshoot_beyond_the_margin_is_pulled_back():
    pred = torch.tensor([1.75, -1.25], requires_grad=True)
    loss = clipped_mse(pred, torch.tensor([1.0, 0.0]), margin=0.25)
    assert loss.item() == pytest.approx((0.5 ** 2 + 1.0 ** 2) / 2)
    loss.backward()
    assert pred.grad[0] > 0 and pred.grad[1] < 0


def test_clipped_mse_keeps_gradient_when_target_is_inside():
    pred = torch.tensor([1.4], requires_grad=True)
    clipped_mse(pred, torch.tensor([0.8])).backward()
    assert pred.grad.item() == pytest.approx(2 * 0.6)


def test_clipped_l1_forgives_the_same_overshoot_and_is_the_mean_absolute_error_elsewhere():
    from src.training.losses import LOSSES
    target = torch.tensor([[1.0, 0.0, 0.5, 0.5]])
    pred = torch.tensor([[1.2, -0.1, 0.8, 0.4]], requires_grad=True)
    loss = LOSSES["clipped_l1"](lambda x: x, (pred, target))
    assert loss.item() == pytest.approx((0.3 + 0.1) / 4, abs=1e-3)   # overshoots of white and black: free
    loss.backward()
    assert pred.grad[0, :2].abs().max() < 1e-3 and pred.grad[0, 2] > 0.2 and pred.grad[0, 3] < -0.2


def test_warmup_cosine():
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.0)


def test_cuda_requested_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device(name)
    assert resolve_device("auto").type == "cpu"


def test_an_unknown_device_names_the_flag_and_the_choices():
    for name in ("gpu", "cuda0", "cpu:x"):
        with pytest.raises(ValueError, match=f"--device {name}: choose auto, cpu, cuda or cuda:N"):
            resolve_device(name)


def test_sigterm_mid_write_removes_the_temp_file_and_prints_the_resume_command(tmp_path, capsys):
    def run(cfg):
        def write(tmp):
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)   # as Kaggle or Slurm stop a run
            time.sleep(10)
        atomic_write(tmp_path / "plot.png", write)

    before = signal.getsignal(signal.SIGTERM)
    code = run_training(run, None, command="src.train_denoiser", kind="denoiser",
                        last_path=tmp_path / "x_last.pt", argv=["--preset", "smoke"])
    assert code == 143 and list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err   # no epoch ended: nothing to resume
    assert "stopped by SIGTERM before the first epoch ended: no checkpoint written" in err
    assert "python -m src.train_denoiser --preset smoke\n" in err and "--resume" not in err
    assert signal.getsignal(signal.SIGTERM) is before

    def run_an_epoch(cfg):
        atomic_write(tmp_path / "x_last.pt", lambda tmp: tmp.write_bytes(b"an epoch's checkpoint"))
        run(cfg)
    assert run_training(run_an_epoch, None, command="src.train_denoiser", kind="denoiser",
                        last_path=tmp_path / "x_last.pt", argv=["--preset", "smoke"]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM. The last completed epoch is kept in" in err
    assert "python -m src.train_denoiser --preset smoke --resume" in err


def test_an_earlier_runs_checkpoint_is_offered_for_resume_only_with_resume(tmp_path, capsys, monkeypatch):
    """Stopped while the pages load, a fresh run has not yet archived the last run's checkpoint."""
    from dataclasses import asdict, replace

    from src.training.config import DenoiserConfig

    last, cfg = tmp_path / "x_last.pt", DenoiserConfig(width=16)
    last.write_bytes(b"the previous run's checkpoint, trained with other flags")

    def interrupted(cfg):
        raise KeyboardInterrupt
    fresh = run_training(interrupted, cfg, command="src.train_denoiser", kind="denoiser", last_path=last,
                         argv=["--width", "16"])
    err = capsys.readouterr().err
    assert fresh == 130 and "--resume" not in err
    assert "interrupted before the first epoch ended" in err and "src.train_denoiser --width 16\n" in err
    monkeypatch.setattr("src.training.loop.load_checkpoint", lambda path, kind: {
                        "config": asdict(cfg)})   # same flags
    resumed = run_training(interrupted, replace(cfg, resume=True), command="src.train_denoiser",
                           kind="denoiser", last_path=last, argv=["--width", "16", "--resume"])
    err = capsys.readouterr().err
    assert resumed == 130 and "src.train_denoiser --width 16 --resume" in err


def test_loader_workers_none_on_cpu_a_few_per_process_on_cuda(monkeypatch):
    cpu, cuda = Runtime(torch.device("cpu")), Runtime(torch.device("cuda", 0))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_workers(-1, cpu) == 0 and loader_workers(3, cpu) == 3 and loader_workers(0, cuda) == 0
    assert loader_workers(-1, cuda) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 ranks share the 16 cores
    assert loader_workers(-1, Runtime(torch.device("cuda", 0), 0, 8)) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert loader_workers(-1, cuda) == 0


def _grad_param(*values):
    p = torch.nn.Parameter(torch.zeros(len(values)))
    p.grad = torch.tensor(values, dtype=torch.float32)
    return p


class Numbered(torch.utils.data.Dataset):
    def __len__(self):
        return 23

    def __getitem__(self, i):
        return torch.full((2,), float(i)), torch.tensor(-i)


@pytest.mark.parametrize("workers", [0, 1])
def test_patch_loader_splits_chunks_into_the_batches_of_one_batch_at_a_time(workers):
    """23 items, batch 3: 7 whole batches in order, the short last one dropped, whatever the chunk."""
    one_at_a_time = list(PatchLoader(Numbered(), 3, 0, torch.device("cpu"), chunk=1))
    chunked = list(PatchLoader(Numbered(), 3, workers, torch.device("cpu"), chunk=10))  # 3 batches a chunk
    assert len(PatchLoader(Numbered(), 3, 0, torch.device("cpu"))) == len(chunked) == 7
    assert [b[1].tolist() for b in one_at_a_time] == [[-3 * k, -3 * k - 1, -3 * k - 2] for k in range(7)]
    assert all(torch.equal(a, b) for x, y in zip(one_at_a_time, chunked) for a, b in zip(x, y))
    assert chunked[0][0].shape == (3, 2)


class SignalsSeen(torch.utils.data.Dataset):
    """Each item: whether the process drawing it ignores SIGINT and SIGTERM."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        ignored = [signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)]
        return (torch.tensor(ignored),)


def test_workers_leave_interrupts_to_the_main_process():
    """Else a SIGTERM to the whole process group (Slurm, kill -- -PGID) kills the workers first, and
    their tracebacks and 'DataLoader worker exited unexpectedly' replace the resume hint."""
    (in_workers,) = next(iter(PatchLoader(SignalsSeen(), 2, 1, torch.device("cpu"))))
    assert in_workers.all()
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN   # the main process keeps its own
    assert not {signal.SIGINT, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, [])   # none held


def test_a_sigterm_while_the_workers_fork_still_stops_the_run(tmp_path):
    """Raised inside os.fork's at-fork callbacks, Terminated is dropped ('Exception ignored in
    _releaseLock') and training goes on, so the loader holds signals back while its workers start."""
    script = tmp_path / "fork_term.py"
    script.write_text('''
import os, signal, torch
from src.common.signals import Terminated, sigterm_as_interrupt
from src.training.loop import PatchLoader

class Items(torch.utils.data.Dataset):
    def __len__(self): return 8
    def __getitem__(self, i): return (torch.tensor([float(i)]),)

sent = []
def once():   # in the parent, inside os.fork: a signal arriving just then
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(after_in_parent=once)
try:
    with sigterm_as_interrupt():
        print("not stopped:", sum(1 for _ in PatchLoader(Items(), 2, 1, torch.device("cpu"))), "batches")
except Terminated:
    print("stopped")
''')
    out = subprocess.run([sys.executable, str(script)], cwd=PROJECT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert out.stdout.strip() == "stopped", out.stdout + out.stderr


def test_grad_clip_caps_at_max_norm_like_clip_grad_norm():
    clip = GradClip(max_norm=1.0)
    big, small = _grad_param(3.0, 4.0), _grad_param(0.3, 0.4)
    clip([big])
    clip([small])
    assert torch.linalg.vector_norm(big.grad).item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(small.grad, torch.tensor([0.3, 0.4]))


def test_grad_clip_scales_a_spike_to_a_few_times_the_running_mean():
    clip = GradClip(max_norm=1000.0, factor=4.0, beta=0.5)
    for _ in range(10):
        clip([_grad_param(0.6, 0.8)])  # norm 1
    assert clip.mean.item() == pytest.approx(1.0, rel=1e-5)
    spike = _grad_param(60.0, 80.0)  # norm 100
    clip([spike])
    assert torch.linalg.vector_norm(spike.grad).item() == pytest.approx(4.0, rel=1e-4)
    assert clip.mean.item() == pytest.approx(2.5, rel=1e-4)  # follows the clipped norm (4), not 100
    clip([_grad_param(float("inf"), 0.0)])
    assert clip.mean.item() == pytest.approx(2.5, rel=1e-4)  # a non-finite step leaves it alone
    restored = GradClip(max_norm=1000.0, factor=4.0, beta=0.5)
    restored.load_state_dict(clip.state_dict(), torch.device("cpu"))
    assert restored.mean.item() == clip.mean.item()


@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_grad_clip_keeps_a_non_finite_first_norm_out_of_the_mean(max_norm):
    """fp16's first step often overflows (the scaler skips it): its inf must not become the mean."""
    clip = GradClip(max_norm=max_norm, factor=4.0, beta=0.5)
    clip([_grad_param(float("inf"), 0.0)])
    assert clip.state_dict() == {"mean": None}   # no finite norm yet: a resumed run starts as fresh
    later = [_grad_param(0.06, 0.08) for _ in range(3)]   # norm 0.1
    for p in later:
        clip([p])
    assert all(torch.allclose(p.grad, torch.tensor([0.06, 0.08])) for p in later)
    assert clip.mean.item() == pytest.approx(0.1, rel=1e-5)   # started at the first finite norm


def test_train_step_clips_steps_and_returns_the_loss():
    from types import SimpleNamespace

    from src.training.loop import make_optimizer, train_step
    from src.training.losses import LOSSES

    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    opt = make_optimizer(model, SimpleNamespace(lr=1e-2, weight_decay=0.0, beta2=0.99))
    assert opt.param_groups[0]["fused"] is True        # on the CPU as well: +25 % patches/s (docs/speed.md)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    x = torch.rand(2, 1, 8, 8)
    batch = [x, 1.0 - x]
    before = [p.detach().clone() for p in model.parameters()]
    expected = LOSSES["mse"](model, batch).item()
    loss = train_step(model, model, batch, LOSSES["mse"], opt, scaler, GradClip(1e-3), None)
    assert loss.item() == pytest.approx(expected)
    # the gradient left on the parameters is the clipped one, and the optimizer moved them
    assert torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]) <= 1e-3 * 1.0001
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    losses = [train_step(model, model, batch, LOSSES["mse"], opt, scaler, GradClip(1.0), None).item()
              for _ in range(30)]
    assert losses[-1] < 0.5 * expected


def test_graph_loss_captures_model_and_loss_and_trains_like_the_eager_step(monkeypatch):
    """The wiring of --cuda-graph, on a CPU: torch.cuda.make_graphed_callables is replaced by a fake
    that checks what the real one requires (autocast's cache off, a tuple of sample tensors that need
    no gradient, a module in training mode) and returns the module unchanged."""
    from types import SimpleNamespace

    from src.models.registry import build_model
    from src.training.graphs import graph_loss, graphed_step
    from src.training.loop import make_optimizer, train_step
    from src.training.losses import LOSSES

    calls = []

    def fake_make_graphed_callables(module, sample_args):
        assert not torch.is_autocast_cache_enabled() and module.training
        assert isinstance(sample_args, tuple) and len(sample_args) == 2
        assert all(isinstance(t, torch.Tensor) and not t.requires_grad for t in sample_args)
        calls.append(module)
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_make_graphed_callables)
    x = torch.rand(2, 1, 32, 32)
    batch, cfg = [x, (x > 0.5).float()], SimpleNamespace(lr=1e-3, weight_decay=0.0, beta2=0.99)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    weights = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = build_model("unet", width=4, depth=1, refine=4)
        opt = make_optimizer(model, cfg)
        net, loss_fn = ((graph_loss(model, LOSSES["clipped_mse"], batch, torch.bfloat16), graphed_step)
                        if graphed else (model, LOSSES["clipped_mse"]))
        losses = [train_step(net, model, batch, loss_fn, opt, scaler, GradClip(1.0, 4.0), None).item()
                  for _ in range(3)]
        weights.append([p.detach().clone() for p in model.parameters()])
    assert len(calls) == 1 and calls[0].model is model
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_cuda_n_becomes_the_current_device_and_plain_cuda_is_left_alone(monkeypatch):
    """CUDA graphs and streams work on the current device, so --device cuda:1 must make it current;
    torch.cuda.set_device raises for a device without an index, so plain `cuda` must not call it.
    Without a GPU: torch.cuda's availability and set_device are stand-ins."""
    from src.common.runtime import setup_runtime

    calls = []

    def fake_set_device(device):
        if torch.device(device).index is None:   # what the real one does
            raise ValueError(f"Expected a torch.device with a specified index, but got:{device}")
        calls.append(device)

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", fake_set_device)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    backends = torch.backends
    flags = (backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    try:
        assert setup_runtime("cuda").device == torch.device("cuda") and calls == []
        assert setup_runtime("cuda:1").device == torch.device("cuda", 1)
        assert calls == [torch.device("cuda", 1)]
        with pytest.raises(DeviceError, match=r"--device cuda:2: PyTorch sees 2 CUDA devices \(cuda:0 to"):
            setup_runtime("cuda:2")
    finally:
        backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = flags


def test_resumed_optimizer_keeps_this_runs_flags_not_the_checkpoints():
    """torch's load_state_dict takes fused/foreach/capturable from the checkpoint: a CPU run resumed on
    CUDA would lose fused AdamW, and keep its step counts on the CPU, out of a CUDA graph's reach."""
    from src.training.loop import load_optimizer_state

    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    eager = torch.optim.AdamW([w], lr=1e-3)
    eager.step()
    saved = eager.state_dict()
    plain = torch.optim.AdamW([w], lr=1e-3, fused=True)
    plain.load_state_dict(saved)
    assert plain.param_groups[0]["fused"] is None            # what the helper guards against
    fused = torch.optim.AdamW([w], lr=1e-3, fused=True)
    load_optimizer_state(fused, saved)
    group = fused.param_groups[0]
    assert group["fused"] is True and group["foreach"] is None and group["capturable"] is False
    assert fused.state[w]["step"].dtype == torch.float32 and fused.state[w]["step"].item() == 1
    assert torch.equal(fused.state[w]["exp_avg"], eager.state[w]["exp_avg"])
    back = torch.optim.AdamW([w], lr=1e-3)
    load_optimizer_state(back, fused.state_dict())
    assert back.param_groups[0]["fused"] is None and saved["param_groups"][0]["fused"] is None


def test_cuda_graph_only_where_it_can_run():
    """On by default, so a GPU user gets it without a flag; skipped on a CPU, beside --compile, under
    torchrun, and for configs without the field (the autoencoders')."""
    from types import SimpleNamespace

    from src.training.config import DenoiserConfig
    from src.training.loop import uses_cuda_graph

    def cfg(**kw):
        return SimpleNamespace(**{"cuda_graph": True, "compile": False, **kw})

    def rt(device, distributed=False):
        return SimpleNamespace(device=torch.device(device), distributed=distributed)

    assert DenoiserConfig().cuda_graph and uses_cuda_graph(cfg(), rt("cuda"))
    assert not uses_cuda_graph(cfg(cuda_graph=False), rt("cuda"))
    assert not uses_cuda_graph(cfg(compile=True), rt("cuda:1"))
    assert not uses_cuda_graph(cfg(), rt("cuda", distributed=True))
    assert not uses_cuda_graph(cfg(), rt("cpu"))
    assert not uses_cuda_graph(SimpleNamespace(compile=False), rt("cuda"))


@pytest.mark.parametrize("steps_before", [0, 2])
def test_step_graph_replays_the_eager_steps(monkeypatch, steps_before):
    """--cuda-graph's whole-step graph on a CPU, with stand-ins for CUDA's streams and capture: capture
    runs nothing, a replay runs the captured step on fresh gradients, as a CUDA graph's replay does.
    Its warm-up steps must leave no trace (weights, AdamW's state, the clipping's mean; a fresh run
    and one resumed after `steps_before` steps), each batch must reach the step, and the learning rate
    must follow the schedule: the steps then equal eager `train_step`s, up to the rounding of the
    learning rate to the fp32 tensor the graph reads (a warm-up left in the weights moves them ~1e-2)."""
    import contextlib

    from src.models.registry import build_model
    from src.training.graphs import StepGraph
    from src.training.loop import train_step, warmup_cosine
    from src.training.losses import LOSSES

    class FakeStream:
        def wait_stream(self, other):
            pass

    class FakeGraph:
        def __init__(self, body):
            self.body, self.loss = body, torch.zeros(())

        def replay(self):
            graph_step.opt.zero_grad(set_to_none=True)
            with graph_step._capturing():   # the learning-rate tensors the real graph reads
                self.loss.copy_(self.body().detach())

    def fake_capture(body):
        graphs.append(FakeGraph(body))
        return graphs[-1], graphs[-1].loss

    graphs = []
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(StepGraph, "_capture", staticmethod(fake_capture))
    gen = torch.Generator().manual_seed(1)
    batches = [[x, (x > 0.5).float()] for x in torch.rand(6, 2, 1, 32, 32, generator=gen)]
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    results = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = build_model("unet", width=4, depth=1, refine=4)
        # fused: the optimizer fit takes, and the one that reads a tensor learning rate on a CPU
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2, betas=(0.9, 0.99), fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(len(batches), 2))
        clip, loss_fn = GradClip(1.0, 2.0), LOSSES["clipped_mse"]
        losses = []
        for i, batch in enumerate(batches):
            if graphed and i == steps_before:
                graph_step = StepGraph(model, loss_fn, opt, clip, None, batches[-1])
            step = graph_step if graphed and i >= steps_before else (
                lambda b: train_step(model, model, b, loss_fn, opt, scaler, clip, None))
            losses.append(step(batch).item())
            sched.step()
        assert all(isinstance(g["lr"], float) and not g["capturable"] for g in opt.param_groups)
        results.append((losses, [p.detach().clone() for p in model.parameters()], clip.mean.item(),
                        [opt.state[p]["exp_avg_sq"].clone() for p in model.parameters()]))
    (eager_losses, eager_w, eager_mean, eager_v), (losses, w, mean, v) = results
    assert len(graphs) == 1 and len(set(losses)) == len(losses)
    assert losses == pytest.approx(eager_losses, rel=1e-5) and mean == pytest.approx(eager_mean, rel=1e-5)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(eager_w, w))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-12) for a, b in zip(eager_v, v))


def _main_first_rank(rank: int, port: int, folder: str, fail: bool, results) -> None:
    import torch.distributed as dist

    from src.common.errors import DataError
    from src.common.runtime import Runtime, main_first
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    marker = Path(folder) / "extracted"

    def work():
        if rank == 0:
            time.sleep(0.5)           # a slow extraction: the other rank must still find it done
            if fail:
                raise DataError("zip: corrupt")
            marker.write_text("done")
        return marker.read_text()
    try:
        results.put((rank, main_first(Runtime(torch.device("cpu"), rank, 2), work)))
    except Exception as e:   # reported, not lost with the process: the test then fails at once
        results.put((rank, f"{type(e).__name__}: {e}"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("fail", [False, True])
def test_main_first_runs_rank_0_first_and_passes_on_its_failure(tmp_path, fail):
    import multiprocessing
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_main_first_rank, args=(r, port, str(tmp_path), fail, results))
             for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    if fail:
        assert got == {0: "DataError: zip: corrupt",
                       1: "DataError: rank 0 could not prepare the data (its error is above)"}
    else:
        assert got == {0: "done", 1: "done"}


@pytest.mark.parametrize("native", [True, False])
def test_cuda_autocast_takes_bf16_only_where_the_gpu_has_it_natively(monkeypatch, native):
    """A T4 or P100 (Kaggle's GPUs) answers yes to bf16 with emulation, but cuDNN has no bf16 convs."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                        native or including_emulation)
    assert amp_dtype(torch.device("cuda"), True) == (torch.bfloat16 if native else torch.float16)
    assert amp_dtype(torch.device("cuda"), False) is None


def test_resume_refuses_other_pages_and_a_checkpoint_of_another_kind(tmp_path, synthetic_dir, capsys):
    """A forgotten --data-dir resumes on the synthetic default, which is not the run's pages; an MNIST
    checkpoint under the run's name is not a denoiser's to go on from (one line, no traceback)."""
    import shutil

    import cv2

    from src.models.checkpoints import make_checkpoint, save_checkpoint
    from src.models.registry import build_model
    from src.train_denoiser import main

    args = ["--preset", "smoke", "--epochs", "1", "--models-dir", str(tmp_path / "m"), "--threads", "1"]
    assert main([*args, "--data-dir", str(synthetic_dir), "--name", "a"]) == 0
    capsys.readouterr()
    other = shutil.copytree(synthetic_dir, tmp_path / "other")
    clean = next((other / "train_cleaned").glob("*.png"))
    cv2.imwrite(str(clean), 255 - cv2.imread(str(clean), cv2.IMREAD_GRAYSCALE))   # one page differs
    assert main([*args, "--epochs", "2", "--data-dir", str(other), "--name", "a", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "--resume: " in err and "was trained on other pages than the 6 pairs of" in err
    save_checkpoint(tmp_path / "m" / "b_last.pt",
                    make_checkpoint(build_model("ae_base", width=8), kind="autoencoder", model_name="ae_base",
                                    model_config=dict(width=8), config={}))
    assert main([*args, "--data-dir", str(synthetic_dir), "--name", "b", "--resume"]) == 1
    assert "holds a checkpoint of kind 'autoencoder', expected 'denoiser'" in capsys.readouterr().err
