"""Where a run computes: device, threads, mixed precision, and torchrun's process group."""
from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from src.common.config import DEVICE
from src.common.errors import DataError, DeviceError

T = TypeVar("T")


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE.fullmatch(name):
        raise ValueError(f"--device {name}: choose auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was requested but PyTorch sees no CUDA device; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} CUDA devices "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def cores_per_process(world: int) -> int:
    """This machine's cores divided among the processes torchrun started on it (all, without torchrun)."""
    return (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))


def setup_runtime(device: str = "auto", threads: int = 0) -> Runtime:
    """Device, and the process group when launched by torchrun (RANK/WORLD_SIZE in the environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cpu":
        # More threads than free cores is catastrophic for OpenMP (spin-waiting: 10x slower steps,
        # docs/speed.md), so processes sharing a machine split its cores, and an OMP_NUM_THREADS set by
        # the user (or by torchrun) is kept unless --threads says otherwise.
        if threads:
            torch.set_num_threads(threads)
        elif "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, cores_per_process(world)))
    else:
        # cuda:N in one process too: streams and CUDA graphs use the current device (plain `cuda` is
        # the current device already, and set_device refuses a device without an index)
        if dev.index is not None:
            torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(dev, rank, world)


def main_first(rt: Runtime, work: Callable[[], T]) -> T:
    """`work()` on rank 0, then on the other ranks: what it writes (extracted pages) is written once.

    torchrun ranks extracting the same zips at once would race: one crashes, or lists a folder still
    half extracted. Rank 0 tells the others whether it succeeded, so its error stops them too instead
    of leaving them at a barrier.
    """
    if not rt.distributed:
        return work()
    done = [False]
    if rt.is_main:
        try:
            result = work()
            done = [True]
        finally:
            dist.broadcast_object_list(done, src=0)
        return result
    dist.broadcast_object_list(done, src=0)
    if not done[0]:
        raise DataError("rank 0 could not prepare the data (its error is above)")
    return work()


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32.

    CUDA: bf16 where supported (no grad scaler needed), else fp16. CPU: bf16 only where oneDNN has
    native bf16 kernels (AVX512-BF16/AMX), where it halves the step time; elsewhere it is emulated
    and slower, so fp32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        # natively only: the default also answers yes for emulated bf16 (T4, P100: Kaggle's GPUs),
        # where cuDNN has no bf16 convolutions
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return torch.bfloat16
    return None


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The loss scaler `train_step` needs: active only for fp16, whose small gradients underflow."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
