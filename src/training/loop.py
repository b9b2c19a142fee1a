"""The one training loop, shared by the denoiser and the MNIST autoencoders.

Epoch-based: each epoch draws `steps_per_epoch` batches from a dataset reseeded by epoch, so a run
killed at any point and restarted with `resume` repeats exactly what the uninterrupted run would
have done. Checkpoints (`<name>_last.pt` every epoch, `<name>_best.pt` on a better validation score)
are written atomically by rank 0. Works on CPU, one GPU (AMP, channels-last) and under torchrun (DDP).
"""
from __future__ import annotations

from dataclasses import asdict
import math
import multiprocessing
from pathlib import Path
import shlex
import sys
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.common.config import resume_conflicts
from src.common.files import archive, ensure_writable_dir
from src.common.runner import run_command
from src.common.runtime import Runtime, amp_dtype, cores_per_process, grad_scaler
from src.common.signals import interrupts_held, quiet_worker
from src.common.wording import counted
from src.models.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint, unwrap
from src.training.graphs import StepGraph, graph_loss, graphed_step
from src.training.losses import mse_step


def loader_workers(requested: int, rt: Runtime) -> int:
    """DataLoader workers: `requested` if >= 0; else none on a CPU, where the model's threads need the
    cores, and up to 4 per process on CUDA, where patches drawn in the main process would hold up the
    thread that launches the GPU's kernels (docs/gpu.md)."""
    if requested >= 0:
        return requested
    if rt.device.type != "cuda":
        return 0
    return max(0, min(4, cores_per_process(rt.world) - 1))


class PatchLoader:
    """`fit`'s batches of a dataset, in its own order (it reseeds by epoch), on `device`; whole batches only.

    The DataLoader hands over chunks of several steps' batches, which are moved to the device at once
    and split: the same batches in the same order as one batch at a time. Why: receiving a batch from a
    worker process (shared-memory tensors) costs the main process more CPU than drawing it there
    (docs/speed.md), and on a GPU that CPU time is taken from the one thread launching the step's
    kernels.
    """

    def __init__(self, dataset, batch_size: int, workers: int, device: torch.device, chunk: int = 32):
        self.batch_size, self.steps, self.device = batch_size, len(dataset) // batch_size, device
        # Forked workers share the pages; others each unpickle a copy (Python 3.14 defaults to forkserver).
        fork = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
        # No persistent_workers: only fresh workers see set_epoch, and forking 4 costs about 0.13 s an
        # epoch, little beside an epoch of `full` even on an H100.
        self.loader = DataLoader(dataset, batch_size=batch_size * max(1, chunk // batch_size), shuffle=False,
                                 num_workers=workers, multiprocessing_context=fork,
                                 worker_init_fn=quiet_worker if workers else None,
                                 pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        with interrupts_held():   # the workers start here; a signal waits until they have
            chunks = iter(self.loader)
        for chunk in chunks:
            chunk = [t.to(self.device, non_blocking=True) for t in chunk]
            for batch in zip(*(t.split(self.batch_size) for t in chunk)):
                if len(batch[0]) == self.batch_size:  # the short last batch is dropped
                    yield list(batch)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


class GradClip:
    """Clip the gradient norm to `factor` x its running mean, and never above `max_norm`.

    After warm-up the denoiser's gradient norm is typically 0.03-0.07, so a fixed cap of 1.0 never
    fires, and a rare batch 30x larger would go through whole: Adam then moves every weight by about
    lr in its direction, and the loss spikes (docs/recipe.md). Scaling such a batch down to a few
    times the usual norm keeps its information and drops the blow-up. The mean follows the clipped
    norms, so one spike does not raise the bar for the next; it stays on the device (no sync per
    step) and is saved in checkpoints so a resumed run clips the same.
    """

    def __init__(self, max_norm: float, factor: float = 0.0, beta: float = 0.98):
        self.max_norm, self.factor, self.beta = max_norm if max_norm > 0 else math.inf, factor, beta
        self.mean: torch.Tensor | None = None

    def start(self, params) -> None:
        """Allocate the running mean (NaN: none yet) on the parameters' device, if it is used and
        missing: it is updated in place from then on, as a CUDA graph of the step needs."""
        if self.factor > 0 and self.mean is None:
            self.mean = torch.full((), math.nan, device=next(iter(params)).device)

    def __call__(self, params) -> None:
        params = list(params)
        grads = [p.grad for p in params if p.grad is not None]
        if not grads or (self.factor <= 0 and math.isinf(self.max_norm)):
            return
        self.start(params)
        norm = nn.utils.get_total_norm(grads)
        limit = torch.full_like(norm, self.max_norm)
        if self.factor > 0:
            limit = torch.fmin(limit, self.factor * self.mean)   # fmin: a NaN mean (none yet) sets no limit
        torch._foreach_mul_(grads, (limit / (norm + 1e-6)).clamp(max=1.0))
        if self.factor > 0:
            self.mean.copy_(self._updated_mean(norm, torch.minimum(norm, limit)))

    def _updated_mean(self, norm: torch.Tensor, clipped: torch.Tensor) -> torch.Tensor:
        """The mean after a step: NaN (none yet) until the first finite norm, which starts it.

        A non-finite norm (fp16 overflow: the scaler skips that step) leaves it alone, the first step's
        included: an inf stored as the mean would turn into NaN at the next step and multiply every
        later gradient. Decided on the device (torch.where), not by a host sync per step.
        """
        mean = self.mean
        followed = torch.where(torch.isnan(mean), clipped, mean.lerp(clipped, 1 - self.beta))
        return torch.where(torch.isfinite(norm), followed, mean)

    def state_dict(self) -> dict:
        mean = None if self.mean is None else float(self.mean)
        return {"mean": None if mean is None or math.isnan(mean) else mean}   # NaN: no finite norm yet

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.mean = None if state.get("mean") is None else torch.tensor(state["mean"], device=device)


def make_optimizer(model: nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW with the run config's lr, weight_decay and beta2 (the optimizer of `fit`).

    The fused kernel, on CUDA and on the CPU: a batch-2 step is bound by per-operation overhead, and it
    updates all parameters in one call instead of one per operation and tensor group (on 2 AMX cores
    66-68 patches/s against 53-54 unfused: docs/speed.md).
    """
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                             betas=(0.9, cfg.beta2), fused=True)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a checkpoint's optimizer state, keeping this run's implementation flags (fused, foreach,
    capturable): torch takes them from the checkpoint, so a run resumed from one written without fused
    AdamW would lose it, and a CPU run resumed on CUDA would keep its step counts on the CPU, where a CUDA
    graph of the step cannot reach them."""
    flags = {k: opt.defaults[k] for k in ("fused", "foreach", "capturable") if k in opt.defaults}
    opt.load_state_dict({**state, "param_groups": [{**g, **flags} for g in state["param_groups"]]})


def train_step(net: nn.Module, model: nn.Module, batch, loss_fn, opt, scaler, clip: GradClip,
               dtype: torch.dtype | None) -> torch.Tensor:
    """One optimiser step of `fit` (autocast forward, scaled backward, clipping); returns the loss.

    `net` is what runs the forward pass (the model, or its compiled / DDP wrapper); `model` owns the
    parameters that are clipped. The learning-rate schedule is the caller's.
    """
    with torch.autocast(batch[0].device.type, dtype=dtype, enabled=dtype is not None):
        loss = loss_fn(net, batch)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    clip(model.parameters())
    scaler.step(opt)
    scaler.update()
    return loss


def uses_cuda_graph(cfg, rt: Runtime) -> bool:
    """Whether `fit` replays its step as CUDA graphs: asked for (the denoiser's default, --cuda-graph),
    on CUDA, in one process (DDP's gradient hooks are not captured) and not compiled."""
    return (bool(getattr(cfg, "cuda_graph", False)) and rt.device.type == "cuda" and not rt.distributed
            and not cfg.compile)


def step_function(model: nn.Module, net: nn.Module, loss_fn: Callable, opt, scaler, clip: GradClip,
                  dtype: torch.dtype | None, graph_sample: list[torch.Tensor] | None = None) -> Callable:
    """`fit`'s training step as batch -> loss: `train_step`, or, given a batch to capture
    (--cuda-graph), replayed as CUDA graphs: the whole step (`StepGraph`) without a grad scaler; with
    fp16's scaler, which stays eager, the model and its loss alone (`graph_loss`)."""
    if graph_sample is None:
        return lambda batch: train_step(net, model, batch, loss_fn, opt, scaler, clip, dtype)
    if not scaler.is_enabled():
        return StepGraph(model, loss_fn, opt, clip, dtype, graph_sample)
    graphed = graph_loss(model, loss_fn, graph_sample, dtype)
    return lambda batch: train_step(graphed, model, batch, graphed_step, opt, scaler, clip, dtype)


def check_resume(saved: dict, cfg, last_path: Path) -> None:
    """ValueError when --resume would continue the run in last_path (config `saved`) with other flags."""
    conflicts = resume_conflicts(saved, cfg)
    if conflicts:
        # a forgotten --preset is the usual cause: it changes several flags at once
        preset = saved.get("preset")
        hint = f" (it was trained with --preset {preset})" if preset and preset != cfg.preset else ""
        raise ValueError(f"--resume: {last_path} was trained with {', '.join(conflicts)}; resume with "
                         f"the checkpoint's values{hint}, or give a new --name to train a separate run")


def checkpoint_paths(models_dir: str | Path, name: str) -> tuple[Path, Path]:
    """(best, last): a run's checkpoints, <models_dir>/<name>_best.pt and <name>_last.pt."""
    return Path(models_dir) / f"{name}_best.pt", Path(models_dir) / f"{name}_last.pt"


def fit(model: nn.Module, dataset, evaluate: Callable[[nn.Module], dict], cfg, rt: Runtime, *,
        kind: str, model_name: str, model_config: dict, loss_fn=mse_step, log=print,
        after_epoch: Callable[[int], Any] | None = None, describe: dict | None = None,
        also: Sequence[Path] = ()) -> dict:
    """Train `model` and keep its best and last checkpoints.

    Args:
        dataset: a Dataset with `set_epoch(epoch)`; len = steps_per_epoch * batch_size.
        evaluate: model -> {"score": lower is better, ...}; run on rank 0 every `cfg.val_every` epochs.
        describe: more entries every checkpoint records about its model (the denoiser: the text size
            of its training pages, which `denoise` scales other pages to).
        also: files a run leaves beside its checkpoints (pretrain_autoencoder's models/mnist_<variant>.pt),
            moved to archive/ with an earlier run's checkpoints when a fresh run takes their name.
        after_epoch: called on rank 0 with each epoch's 0-based number once its steps are done, before
            any evaluation (pretrain_autoencoder draws epoch 1's reconstructions so, whatever val_every).
        cfg: a run config with epochs, lr, weight_decay, beta2, warmup_epochs, grad_clip, clip_factor,
            batch_size, steps_per_epoch, seed, amp, compile, workers, val_every, models_dir, name, resume
            (and optionally cuda_graph).
    Returns: {"history": [...], "best_score": float, "best_path": Path, "last_path": Path}.
    """
    graphed = uses_cuda_graph(cfg, rt)
    models_dir = Path(cfg.models_dir)
    best_path, last_path = checkpoint_paths(models_dir, cfg.name)
    if rt.is_main:
        ensure_writable_dir(models_dir)  # now, not when the first epoch's checkpoint is due
    # channels-last: oneDNN (CPU) and cuDNN convolutions run 20-30 % faster on it (docs/recipe.md).
    model.to(rt.device, memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    total = cfg.epochs * cfg.steps_per_epoch
    lr_factor = warmup_cosine(total, int(cfg.warmup_epochs * cfg.steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    start, best, history = 0, math.inf, []
    clip = GradClip(cfg.grad_clip, cfg.clip_factor)
    dtype = amp_dtype(rt.device, cfg.amp)
    scaler = grad_scaler(dtype)
    if cfg.resume and last_path.exists():
        ckpt = load_checkpoint(last_path, kind)
        saved = ckpt.get("config", {})
        check_resume(saved, cfg, last_path)
        unwrap(model).load_state_dict(ckpt["model"])
        load_optimizer_state(opt, ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        # the lr of this run's schedule from the first step, not the one the checkpoint's last step left
        # (0 at the end of a finished run resumed with more --epochs)
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * lr_factor(sched.last_epoch)
        clip.load_state_dict(ckpt.get("grad_clip", {}), rt.device)
        if scaler.is_enabled() and ckpt.get("scaler"):   # fp16: the loss scale it had learnt
            scaler.load_state_dict(ckpt["scaler"])
        start, best, history = ckpt["epoch"], ckpt["best_score"], list(ckpt["history"])
        if rt.is_main:
            log(f"resumed from {last_path} after epoch {start} (best score {best:.5f})")
            was = ckpt.get("world", 1)
            if was != rt.world:   # allowed, but then a step holds another number of patches
                log(f"the checkpoint was trained by {counted(was, 'process', 'processes')}, this run has "
                    f"{rt.world}: a step now takes {counted(rt.world * cfg.batch_size, 'patch', 'patches')}, "
                    f"not {was * cfg.batch_size}")
            if start >= cfg.epochs:
                log(f"nothing to train: the checkpoint has {counted(start, 'epoch')} and --epochs is "
                    f"{cfg.epochs}")
            elif saved.get("epochs", cfg.epochs) != cfg.epochs:
                log(f"--epochs {cfg.epochs} (checkpoint: {saved['epochs']}): the cosine schedule now ends at "
                    f"epoch {cfg.epochs}, so the learning rate goes on from "
                    f"{lr_factor(start * cfg.steps_per_epoch):.2f} x --lr")
    elif rt.is_main:
        if cfg.resume:
            log(f"--resume: no {last_path} yet, starting from scratch")
        moved = archive([best_path, last_path, *also])
        if moved:
            log(f"an earlier run's checkpoints moved to {moved[0].parent}/ "
                f"({', '.join(p.name for p in moved)}); --resume continues a run instead, --name starts one "
                f"beside it")

    net = model.train()
    if cfg.compile:
        net = torch.compile(net)
    if rt.distributed:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if rt.is_main and rt.device.type == "cuda" and getattr(cfg, "cuda_graph", False) and not graphed:
        log("the training step runs without CUDA graphs: they need one process and no --compile")
    # captured before the loader starts (its pinning thread must not touch CUDA during a capture), and
    # only if there is an epoch to train
    sample = ([torch.stack(t).to(rt.device) for t in zip(*(dataset[i] for i in range(cfg.batch_size)))]
              if graphed and start < cfg.epochs else None)
    try:
        step = step_function(model, net, loss_fn, opt, scaler, clip, dtype, sample)
    except (RuntimeError, AssertionError) as e:   # a GPU or driver that cannot capture: say how to do without
        raise RuntimeError(f"preparing the CUDA graph of the training step (warm-up steps, capture) failed: "
                           f"{e}; --no-cuda-graph trains without it") from e
    loader = PatchLoader(dataset, cfg.batch_size, loader_workers(cfg.workers, rt), rt.device)

    def checkpoint(epoch: int, score: float) -> dict:
        return make_checkpoint(model, kind=kind, model_name=model_name, model_config=model_config,
                               config=asdict(cfg), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                               epoch=epoch, best_score=score, history=history, grad_clip=clip.state_dict(),
                               scaler=scaler.state_dict(), world=rt.world, **(describe or {}))

    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout etc.: same draws after a resume
        dataset.set_epoch(epoch)
        net.train()
        t0, loss_sum, n = time.perf_counter(), torch.zeros((), device=rt.device), 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=None if rt.is_main else True)
        for batch in bar:
            loss = step(batch)
            sched.step()
            loss_sum += loss.detach()
            n += 1
            if n % 10 == 0 and not bar.disable:  # .item() waits for the GPU: only for a visible bar
                bar.set_postfix(loss=f"{loss_sum.item() / n:.5f}")
        if rt.distributed:  # log the loss of every rank's patches, not rank 0's alone
            dist.all_reduce(loss_sum)
            loss_sum /= rt.world
        train_s = time.perf_counter() - t0
        row = dict(epoch=epoch + 1, train_loss=loss_sum.item() / max(n, 1), train_s=round(train_s, 2),
                   samples_per_s=round(n * cfg.batch_size * rt.world / train_s, 1), lr=sched.get_last_lr()[0])
        if rt.is_main:
            if after_epoch is not None:
                after_epoch(epoch)
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                t1 = time.perf_counter()
                model.eval()
                row.update(evaluate(model))
                row["val_s"] = round(time.perf_counter() - t1, 2)
            history.append(row)
            score = row.get("score", math.inf)
            # Until a validation score exists (val_every > 1, or no held-out pages) the latest is the best.
            improved = score < best or math.isinf(best)
            best = min(best, score)
            ckpt = checkpoint(epoch + 1, best)
            if improved or not best_path.exists():
                save_checkpoint(best_path, ckpt)
            save_checkpoint(last_path, ckpt)
            log(format_row(row) + (" *" if improved and "score" in row else ""))  # * only on a scored epoch
        if rt.distributed:
            dist.barrier()
    return dict(history=history, best_score=best, best_path=best_path, last_path=last_path)


def schedule_text(cfg, item: str, items: str = "") -> str:
    """`14 epochs x 450 steps x 2 patches`: what a run will train on, for its first log line."""
    return " x ".join([counted(cfg.epochs, "epoch"), counted(cfg.steps_per_epoch, "step"),
                       counted(cfg.batch_size, item, items)])


def format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:3d}", f"loss {row['train_loss']:.5f}"]
    if "score" in row:
        parts.append(f"val {row['score']:.5f}")
    parts.append(f"{row['samples_per_s']:.0f} samples/s")
    return " | ".join(parts)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime in ns) of a file, None when there is none: `atomic_write` changes both."""
    try:
        st = path.stat()
    except OSError:   # also a file where its folder should be: the run says so, as one error line
        return None
    return st.st_ino, st.st_mtime_ns


def run_training(run: Callable, cfg, *, command: str, kind: str, last_path: Path, argv=None) -> int:
    """A training command's exit code (`run_command`'s), refusing a --resume from a checkpoint of another
    `kind` or with other flags before any data is loaded, and on Ctrl-C or SIGTERM printing the command
    that resumes the run."""
    before = file_stamp(last_path)
    resume = getattr(cfg, "resume", False)

    def work():
        if resume and last_path.exists():
            check_resume(load_checkpoint(last_path, kind).get("config", {}), cfg, last_path)
        run(cfg)

    def interrupted(what: str) -> str:
        args = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv) if a != "--resume")
        # Only this run's checkpoint: one of an earlier run, archived by `fit`, is not this run's to resume.
        now = file_stamp(last_path)
        if now is not None and (resume or now != before):
            return (f"{what}. The last completed epoch is kept in {last_path}; continue with:\n"
                    f"  python -m {command} {args} --resume")
        return (f"{what} before the first epoch ended: no checkpoint written; start again with:\n"
                f"  python -m {command} {args.removesuffix(' --')}")

    return run_command(work, errors=(ValueError, RuntimeError), interrupted=interrupted)
