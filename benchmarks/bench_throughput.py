"""Training throughput: patches per second of a preset's recipe, on CPU and on CUDA when present.

    python benchmarks/bench_throughput.py [--preset quick] [--steps 30] [--device cpu|cuda|all] [--threads N]

Times `src.training.loop.train_step`, the step `fit` runs (same model, loss, AMP, optimizer and
gradient clipping), on random patches after a few warm-up steps, and prints one line per device.

Experiments for the GPU, where a batch-2 step is bound by the CPU launching ~320 small kernels
(docs/gpu.md): `--no-amp` (autocast casts every
weight every step), `--compile-mode reduce-overhead` (torch.compile's CUDA graphs), `--cuda-graph`
(`fit`'s default on CUDA: the whole step as one CUDA graph, or with `--fp16` the model and loss alone)
and `--profile`
(the ten operations costing the most CPU time). `--fp16` takes the path of GPUs without native bf16
(Kaggle's T4 and P100: fp16 autocast and the grad scaler) on one that has it, and prints the loss
scale and the last loss. `--sampling` also times the patch DataLoader alone
(`--workers N`: also from N worker processes, and what receiving a batch costs the main process).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.common.runtime import amp_dtype, grad_scaler, setup_runtime  # noqa: E402
from src.models.registry import build_model  # noqa: E402
from src.training.config import DENOISER_PRESETS, DenoiserConfig  # noqa: E402
from src.training.loop import GradClip, PatchLoader, make_optimizer, step_function  # noqa: E402
from src.training.losses import LOSSES  # noqa: E402


def measure(cfg: DenoiserConfig, device: str, steps: int, batch_size: int, compile_mode: str = "default",
            cuda_graph: bool = False, profile: bool = False, fp16: bool = False) -> float:
    rt = setup_runtime(device, cfg.threads)
    torch.manual_seed(0)
    model = build_model(cfg.model, **cfg.model_config()).to(rt.device, memory_format=torch.channels_last)
    dtype = torch.float16 if fp16 else amp_dtype(rt.device, cfg.amp)
    scaler = grad_scaler(dtype)
    clip = GradClip(cfg.grad_clip, cfg.clip_factor)
    x = torch.rand(batch_size, 1, cfg.patch_size, cfg.patch_size, device=rt.device)
    y = (torch.rand_like(x) > 0.2).float()
    net = torch.compile(model, mode=compile_mode) if cfg.compile else model
    opt = make_optimizer(model, cfg)
    train_step = step_function(model, net, LOSSES[cfg.loss], opt, scaler, clip, dtype,
                               [x, y] if cuda_graph else None)

    def step():
        return train_step([x, y])

    for _ in range(5):
        step()
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    rate = steps * batch_size / (time.perf_counter() - t0)
    if fp16:   # a scale that collapsed, or a NaN loss, would show the scaler path broken
        print(f"fp16 grad scaler: loss scale {scaler.get_scale():g} after {steps + 5} steps, "
              f"last loss {loss.item():.5f}")
    if profile:
        from torch.profiler import ProfilerActivity
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if rt.device.type == "cuda" else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(10):
                step()
            sync()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    return rate


def sampling_rate(cfg: DenoiserConfig, workers: int, device: torch.device,
                  batches: int = 1000) -> tuple[float, float]:
    """Batches per second that `fit`'s loader delivers on `device` from PatchDataset (random 420x540
    pages), and the main process's CPU milliseconds per batch: with workers, what receiving (pinning,
    copying) a batch takes from the training loop, which on a GPU launches the step's kernels."""
    from src.training.patches import PatchDataset
    rng = np.random.default_rng(0)
    pages = [tuple(rng.random((420, 540), dtype=np.float32) for _ in range(2)) for _ in range(8)]
    dataset = PatchDataset(pages, cfg.patch_size, batches * cfg.batch_size)
    it = iter(PatchLoader(dataset, cfg.batch_size, workers, device))
    next(it)  # the workers' start is an epoch's cost, not a batch's
    t0, c0 = time.perf_counter(), time.process_time()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", choices=sorted(DENOISER_PRESETS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=0, help="batch size (default: the preset's)")
    p.add_argument("--gpu-batch-size", type=int, default=0, help="batch size on CUDA (default: --batch-size)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--no-amp", action="store_true", help="full fp32 (TF32 matmuls on CUDA)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="the step as a CUDA graph (fit's default on CUDA; --fp16: model and loss only)")
    p.add_argument("--fp16", action="store_true",
                   help="CUDA: fp16 autocast with the grad scaler (T4/P100's path) even where bf16 is native")
    p.add_argument("--profile", action="store_true", help="print the operations costing the most CPU time")
    p.add_argument("--sampling", action="store_true",
                   help="also time patch sampling (fit's DataLoader), in the main process")
    p.add_argument("--workers", type=int, default=0,
                   help="with --sampling, also time it from this many worker processes (onto the GPU "
                        "when there is one), as fit's loader on CUDA")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    args = p.parse_args()
    overrides = {"compile": args.compile, "threads": args.threads, "amp": not args.no_amp}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    cfg = DenoiserConfig(preset=args.preset, **{**DENOISER_PRESETS[args.preset], **overrides})
    if args.cuda_graph and (args.device != "cuda" or args.compile):
        sys.exit("--cuda-graph needs --device cuda, and runs without --compile (as in fit)")
    if args.fp16 and (args.device != "cuda" or args.no_amp):
        sys.exit("--fp16 needs --device cuda, and autocast (not --no-amp)")
    if args.sampling:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for workers in sorted({0, args.workers}):
            rate, main_ms = sampling_rate(cfg, workers, device)
            print(f"{args.preset} patch sampling: {rate:.0f} batches/s of {cfg.batch_size} x "
                  f"{cfg.patch_size}px ({1e3 / rate:.2f} ms per batch), "
                  + (f"{workers} workers: main process CPU {main_ms:.3f} ms per batch" if workers
                     else "main process"))
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: no CUDA device here, skipped")
            continue
        bs = args.gpu_batch_size or cfg.batch_size if dev == "cuda" else cfg.batch_size
        rate = measure(cfg, dev, args.steps, bs, args.compile_mode, args.cuda_graph, args.profile, args.fp16)
        name = (torch.cuda.get_device_name() if dev == "cuda"
                else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} of {os.cpu_count()} cores")
        amp = torch.float16 if args.fp16 else amp_dtype(torch.device(dev), cfg.amp)
        print(f"{args.preset} {dev} ({name}): {rate:.1f} patches/s of {cfg.patch_size}px, batch {bs}, "
              f"amp {str(amp).replace('torch.', '') if amp else 'off'}"
              f"{f', compiled ({args.compile_mode})' if cfg.compile else ''}"
              f"{', CUDA graph' if args.cuda_graph else ''}")


if __name__ == "__main__":
    main()
