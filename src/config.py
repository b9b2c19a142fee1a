"""Typed run configurations, presets, and their command-line overrides.

Each command has one dataclass; every field is a `--flag` (underscores become dashes), a preset
sets several fields at once, explicit flags win over the preset, unknown flags are an error. The
resolved config is stored in every checkpoint, so a run describes itself.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class DenoiserConfig:
    preset: str = "quick"
    # model
    model: str = "unet"            # see src.models.MODELS
    width: int = 32                # channels at the first level
    depth: int = 3                 # number of 2x downsamplings
    refine: int = 16               # channels of a full-resolution refinement block (0: none)
    init_from: str = ""            # MNIST autoencoder checkpoint whose encoder starts this model
    # data
    data_dir: str = "competition"  # zip(s) or extracted folders; synthetic default when empty
    patch_size: int = 128
    batch_size: int = 2            # measured: at equal patches seen, 2 beats 4, 8 and 16 (more updates)
    steps_per_epoch: int = 450
    photometric: float = 0.0       # chance of brightness/contrast/noise jitter on inputs (0.3: worse, README)
    flips: bool = False            # the 8 flips/turns of each patch; off: text is never mirrored (README)
    val_fraction: float = 0.15     # share of pages held out (by page); 0 trains on every pair
    folds: int = 0                 # >1: K-fold split by page, validate on fold `fold`
    fold: int = 0
    seed: int = 0                  # initial weights and patch draws
    split_seed: int = 0            # which pages are held out: fixed while --seed varies, so seeds compare
    # optimisation
    epochs: int = 14
    lr: float = 1e-3               # 2e-3 measured worse (README, benchmarks)
    weight_decay: float = 1e-4
    beta2: float = 0.99            # Adam's second-moment decay: 0.999 let batch-2 runs spike (README)
    warmup_epochs: float = 0.5     # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0         # cap on the gradient norm
    clip_factor: float = 4.0       # and to this many times its running mean: no loss spikes (README)
    loss: str = "clipped_mse"      # mse | clipped_mse (MSE after clipping to [0, 1], as scored)
    # validation: the same tiled inference the submission uses
    tile: int = 1024               # pages up to 1024 px in one piece: half the time of 512 tiles, same RMSE
    overlap: int = 32
    tta: bool = True               # average over flips when validating (make_submission does by default)
    val_every: int = 7
    # runtime
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: bool = True               # mixed precision: CUDA, and CPUs with native bf16 (AVX512-BF16/AMX)
    compile: bool = False          # torch.compile the model (CUDA)
    cuda_graph: bool = False       # model + loss, forward/backward, as CUDA graphs (README: not yet on a GPU)
    workers: int = -1              # DataLoader workers; -1: 0 on CPU, a few on CUDA (train.loader_workers)
    threads: int = 0               # CPU threads for torch; 0 = all cores
    models_dir: str = "models"
    name: str = "denoiser"         # checkpoints are <models_dir>/<name>_best.pt and _last.pt
    resume: bool = False

    def model_config(self) -> dict[str, Any]:
        """The keyword arguments of `build_model(self.model, ...)`, as stored in checkpoints."""
        return dict(width=self.width, depth=self.depth, refine=self.refine)


# Presets are tuned on 2 CPU cores (see README benchmarks); on a GPU the same recipes run with AMP.
DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(width=8, depth=2, patch_size=48, batch_size=4, steps_per_epoch=3, epochs=2, val_every=1,
                  tile=128, overlap=16),
    "quick": dict(),
    "full": dict(epochs=60, steps_per_epoch=1200, val_every=5),
}


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    flag = "--" + f.name.replace("_", "-")
    if f.type in ("bool", bool):
        parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
    else:
        conv = {"int": int, "float": float, "str": str}.get(
            f.type if isinstance(f.type, str) else f.type.__name__, str)
        parser.add_argument(flag, dest=f.name, type=conv, default=None, metavar=f.name.upper())


def parse_config(cls, presets: dict[str, dict[str, Any]], argv=None, description: str = ""):
    """Build a `cls` from defaults, then `--preset`, then explicit flags; unknown flags exit with code 2."""
    # No abbreviations: `--epoch 1` silently meaning `--epochs 1` is how a typo goes unnoticed.
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(cls):
        if f.name == "preset":
            parser.add_argument("--preset", choices=sorted(presets), default=cls.preset)
        else:
            _add_field(parser, f)
    args = parser.parse_args(argv)
    values = dict(presets[args.preset])
    values.update({k: v for k, v in vars(args).items() if v is not None})
    return cls(**values)


def config_from_dict(cls, values: dict[str, Any]):
    """Rebuild a config stored in a checkpoint; keys this version does not know are an error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**values)
