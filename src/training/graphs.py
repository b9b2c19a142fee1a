"""CUDA graphs of the training step: one launch instead of hundreds of small kernels.

Why: a batch-2 step of the U-Net is about 320 small kernels, and run eagerly on an H100 the GPU idles
88 % of the step while the CPU launches them (docs/gpu.md). Two shapes, chosen by `fit`:

- `StepGraph`: the whole step (forward, backward, gradient clipping, fused AdamW) captured once and
  replayed: per step the CPU copies the batch in, sets the learning rate and launches one graph.
- `graph_loss`: the model and its loss alone (forward and backward), for fp16, whose grad scaler
  steps and updates its scale outside the graph.

The model itself is left as it was, so validation and inference run its ordinary forward. Every
batch must have the sample's shape (`fit` drops the last, short batch).
"""
from __future__ import annotations

import contextlib
from typing import Callable
import warnings

import torch
from torch import nn


class LossModule(nn.Module):
    """`loss_fn(model, (x, y))` as a module of (x, y), so one CUDA graph holds the model and its loss."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model, (x, y))


def graphed_step(net: nn.Module, batch) -> torch.Tensor:
    """The `loss_fn` of `train_step` when `net` is what `graph_loss` returned."""
    return net(*batch)


def graph_loss(model: nn.Module, loss_fn: Callable, sample: list[torch.Tensor],
               dtype: torch.dtype | None) -> nn.Module:
    """The training loss of `model` on a batch like `sample`, captured once as CUDA graphs (forward,
    and backward into the parameters' gradients) and replayed after; call it through `graphed_step`.
    The clipping and the optimizer (about 20 kernels) stay ordinary code.
    """
    module = LossModule(model, loss_fn).train()
    # autocast's weight-cast cache would hold tensors freed after capture: off, as torch.cuda's docs ask
    with torch.autocast(sample[0].device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False):
        return torch.cuda.make_graphed_callables(module, tuple(sample))


class StepGraph:
    """`train_step` without a grad scaler (bf16 or fp32), captured once as one CUDA graph; call it with
    a batch like `sample` for the step's loss (a tensor the next call overwrites).

    Capture records kernels without running them, and every tensor they touch must stay where it was:
    - the learning rate lives in a tensor on the device, set from the optimizer's (the schedule's)
      float before each replay; the float stays in the optimizer, so checkpoints and resumed runs see
      plain numbers. The same for `capturable`, which AdamW needs only while capturing;
    - `GradClip` updates its running mean in place;
    - the gradients are allocated by the captured backward and overwritten by each replay.
    A few warm-up steps on a side stream come first (cuDNN and cuBLAS set up their workspaces there,
    AdamW its state); the weights, the optimizer's state and the clipping's mean are then put back as
    they were, so the first replay is the run's first step, or the resumed run's next one.
    """

    WARMUP = 3

    def __init__(self, model: nn.Module, loss_fn: Callable, opt: torch.optim.Optimizer, clip,
                 dtype: torch.dtype | None, sample: list[torch.Tensor]):
        self.opt = opt
        self.inputs = [t.detach().clone() for t in sample]
        self.lrs = [torch.tensor(float(g["lr"]), device=sample[0].device) for g in opt.param_groups]
        params = [p for p in model.parameters() if p.requires_grad]
        device_type = sample[0].device.type

        def body() -> torch.Tensor:
            with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None, cache_enabled=False):
                loss = loss_fn(model, self.inputs)
            loss.backward()
            clip(params)
            opt.step()
            return loss

        clip.start(params)   # its mean exists before capture, NaN until a first norm
        saved = _snapshot(params, opt, clip)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self._capturing():
            for _ in range(self.WARMUP):
                opt.zero_grad(set_to_none=True)
                body()
        torch.cuda.current_stream().wait_stream(side)
        _restore(saved, params, opt, clip)
        opt.zero_grad(set_to_none=True)   # the captured backward allocates the gradients anew
        with self._capturing():
            self.graph, self.loss = self._capture(body)

    @contextlib.contextmanager
    def _capturing(self):
        """The optimizer's groups with the learning-rate tensors and `capturable`, then as they were."""
        groups = self.opt.param_groups
        kept = [(g["lr"], g.get("capturable", False)) for g in groups]
        cuda = self.lrs[0].device.type == "cuda"   # a CPU test's stand-in capture: AdamW refuses it there
        for g, lr in zip(groups, self.lrs):
            g["lr"], g["capturable"] = lr, cuda
        try:
            with warnings.catch_warnings():   # the warm-up runs a capturable AdamW uncaptured, on purpose
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                yield
        finally:
            for g, (lr, capturable) in zip(groups, kept):
                g["lr"], g["capturable"] = lr, capturable

    @staticmethod
    def _capture(body: Callable[[], torch.Tensor]):
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = body()
        return graph, loss.detach()   # not the autograd graph of the capture

    def __call__(self, batch) -> torch.Tensor:
        for static, t in zip(self.inputs, batch):
            static.copy_(t, non_blocking=True)
        for lr, g in zip(self.lrs, self.opt.param_groups):
            lr.fill_(g["lr"])
        self.graph.replay()
        return self.loss


def _snapshot(params, opt, clip) -> dict:
    """Copies of what the warm-up steps change: the weights, AdamW's state, the clipping's mean."""
    return {"params": [p.detach().clone() for p in params],
            "state": {p: {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                      for p in params if p in opt.state},
            "mean": None if clip.mean is None else clip.mean.clone()}


@torch.no_grad()
def _restore(saved: dict, params, opt, clip) -> None:
    """Undo the warm-up steps in place (capture keeps the tensors it saw): a parameter that had no
    optimizer state gets AdamW's initial state, zeros and step 0."""
    for p, kept in zip(params, saved["params"]):
        p.copy_(kept)
    for p in params:
        before = saved["state"].get(p, {})
        for k, v in opt.state[p].items():
            if torch.is_tensor(v):
                v.copy_(before[k]) if k in before else v.zero_()
    if saved["mean"] is not None:
        clip.mean.copy_(saved["mean"])
