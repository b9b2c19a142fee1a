"""Training throughput: patches per second of a preset's recipe, on CPU and on CUDA when present.

    python benchmarks/bench_throughput.py [--preset quick] [--steps 30] [--device cpu|cuda|all] [--threads N]

Times `src.train.train_step`, the step `src.train.fit` runs (same model, loss, AMP, optimizer and
gradient clipping), on random patches after a few warm-up steps, and prints one line per device.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from src.config import DENOISER_PRESETS, DenoiserConfig  # noqa: E402
from src.models import build_model  # noqa: E402
from src.train import (LOSSES, GradClip, amp_dtype, grad_scaler, make_optimizer, setup_runtime,  # noqa: E402
                       train_step)


def measure(cfg: DenoiserConfig, device: str, steps: int, batch_size: int) -> float:
    rt = setup_runtime(device, cfg.threads)
    torch.manual_seed(0)
    model = build_model(cfg.model, **cfg.model_config()).to(rt.device, memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile else model
    opt = make_optimizer(model, cfg)
    dtype = amp_dtype(rt.device, cfg.amp)
    scaler = grad_scaler(dtype)
    clip = GradClip(cfg.grad_clip, cfg.clip_factor)
    x = torch.rand(batch_size, 1, cfg.patch_size, cfg.patch_size, device=rt.device)
    y = (torch.rand_like(x) > 0.2).float()

    def step():
        train_step(net, model, [x, y], LOSSES[cfg.loss], opt, scaler, clip, dtype)

    for _ in range(5):
        step()
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", choices=sorted(DENOISER_PRESETS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    p.add_argument("--gpu-batch-size", type=int, default=0, help="batch size on CUDA (default: the preset's)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    args = p.parse_args()
    cfg = DenoiserConfig(preset=args.preset, **{**DENOISER_PRESETS[args.preset], "compile": args.compile,
                                                   "threads": args.threads})
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: no CUDA device here, skipped")
            continue
        bs = args.gpu_batch_size or cfg.batch_size if dev == "cuda" else cfg.batch_size
        rate = measure(cfg, dev, args.steps, bs)
        name = (torch.cuda.get_device_name() if dev == "cuda"
                else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} of {os.cpu_count()} cores")
        amp = amp_dtype(torch.device(dev), cfg.amp)
        print(f"{args.preset} {dev} ({name}): {rate:.1f} patches/s of {cfg.patch_size}px, batch {bs}, "
              f"amp {str(amp).replace('torch.', '') if amp else 'off'}{', compiled' if cfg.compile else ''}")


if __name__ == "__main__":
    main()
