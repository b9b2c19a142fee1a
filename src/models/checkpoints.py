"""One checkpoint format and one loader, for resume, inference, transfer and the Kaggle kernel.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) so that it loads with
`torch.load(weights_only=True)`: a crafted pickle cannot run code. It describes itself: the model
name and config rebuild the network without the command that trained it.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
import re
from typing import Any

import torch
from torch import nn

from src.common.errors import CheckpointError
from src.common.files import atomic_write
from src.models.registry import build_model

FORMAT_VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel and/or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def weights_digest(models: list[nn.Module]) -> str:
    """A digest of the models' weights: one checkpoint digests alike under any path or name."""
    h = hashlib.sha256()
    for model in models:
        for name, tensor in unwrap(model).state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def make_checkpoint(model: nn.Module, *, kind: str, model_name: str, model_config: dict,
                    config: dict, **state: Any) -> dict:
    """The checkpoint dict: weights on CPU plus everything needed to rebuild and resume."""
    weights = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    return dict(format_version=FORMAT_VERSION, kind=kind, model_name=model_name,
                model_config=dict(model_config), model=weights, config=dict(config), **state)


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    # serialised in memory first: torch.save on a full disk raises a RuntimeError naming no file
    # ("unexpected pos ..."); a plain write raises OSError(ENOSPC), which atomic_write names
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_failure(e: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line.

    torch's own message is a paragraph that suggests weights_only=False, which would run whatever
    code a crafted file holds; only its "WeightsUnpickler error" detail is kept.
    """
    text = str(e)
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\. Please|\n\n|$)", text, re.S)
    if detail and "Unsupported global" in detail.group(1):
        return (f"it holds Python objects a safe load refuses ({detail.group(1)}); this package's "
                f"checkpoints hold only tensors and plain data, so do not load it with weights_only=False")
    why = detail.group(1) if detail else (text.strip().splitlines() or [type(e).__name__])[0]
    # a bare number (the KeyError of a text file's first byte) says nothing to the reader
    detail = f" ({first_sentence(why)})" if re.search("[A-Za-z]", why) else ""
    return f"truncated, corrupt or not a PyTorch file{detail}"


def first_sentence(text: str, limit: int = 200) -> str:
    """text up to its first sentence end (the period dropped); past `limit` chars, cut at a word and "..."."""
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0].rstrip(".")
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


def load_checkpoint(path: Path, kind: str | None = None) -> dict:
    """Load and check a checkpoint (weights_only=True). Raises CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass a checkpoint file such as {_examples(path)}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:   # permissions, a failing disk: the file may be fine
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    except Exception as e:  # torch raises several types for truncated files, pickles, non-zip data
        raise CheckpointError(f"{path}: not a loadable checkpoint of this package: "
                              f"{load_failure(e)}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or type(ckpt.get("format_version")) is not int:
        raise CheckpointError(f"{path}: not a checkpoint of this package (no format_version/model keys)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
                              f"package reads ({FORMAT_VERSION}); update the package")
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a checkpoint of kind {ckpt.get('kind')!r}, expected {kind!r}")
    return ckpt


def _examples(folder: Path, most: int = 3) -> str:
    """Up to `most` checkpoint files in folder ("a, b or c"), else the usual one, for an error message."""
    found = [str(p) for p in sorted(folder.glob("*.pt"))[:most]] or ["models/denoiser_best.pt"]
    return " or ".join([", ".join(found[:-1]), found[-1]] if len(found) > 1 else found)


def model_from_checkpoint(ckpt: dict, path: Path | str = "checkpoint") -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights (strict)."""
    try:
        model = build_model(ckpt["model_name"], **ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        msg = str(e).strip().splitlines()[0][:300]
        raise CheckpointError(f"{path}: weights do not fit model {ckpt.get('model_name')!r}: {msg}") from None
    return model.to(memory_format=torch.channels_last).eval()  # faster convs on CPU and GPU


def load_model(path: Path, kind: str | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on device, checkpoint dict) from a checkpoint file."""
    ckpt = load_checkpoint(path, kind)
    return model_from_checkpoint(ckpt, path).to(device), ckpt


STEM = "encoder.stem.1.0.weight"   # blocks.Encoder's first conv, (width, 4, 3, 3)


def init_encoder_from(model: nn.Module, path: Path, log=None) -> list[str]:
    """Copy a pretrained autoencoder's encoder weights into `model.encoder` (transfer learning).

    Loads every `encoder.*` tensor the model also has (a shallower autoencoder fills the first
    levels, a deeper one gives only its first). Returns the names loaded; `log` gets one line saying
    what was copied and which levels were not. Raises CheckpointError on a shape mismatch or no overlap.
    """
    ckpt = load_checkpoint(path, kind="autoencoder")
    own = unwrap(model).state_dict()
    src = {k: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    shared = sorted(k for k in src if k in own)
    bad = [f"{k} {tuple(src[k].shape)} vs {tuple(own[k].shape)}"
           for k in shared if src[k].shape != own[k].shape]
    if bad:
        # The stem's first conv has --width output channels: name the two widths, not tensor shapes.
        if STEM in shared and src[STEM].shape[0] != own[STEM].shape[0]:
            theirs, ours = src[STEM].shape[0], own[STEM].shape[0]
            raise CheckpointError(f"{path}: encoder weights do not fit this model (pretrained with --width "
                                  f"{theirs}, this model has --width {ours}); use the same --width as the "
                                  f"pretraining (--width {theirs} here, or pretrain with --width {ours})")
        raise CheckpointError(f"{path}: encoder weights do not fit this model ({'; '.join(bad[:3])}); "
                              f"use the same --width as the pretraining")
    if not shared:
        raise CheckpointError(f"{path}: no encoder weights in common with this model")
    unwrap(model).load_state_dict({**own, **{k: src[k] for k in shared}})
    if log is not None:
        log(transfer_text(path, shared, list(src), [k for k in own if k.startswith("encoder.")]))
    return shared


def encoder_depth(keys: list[str]) -> int:
    """Levels below the stem among blocks.Encoder's tensor names (`encoder.downs.<level - 1>.*`)."""
    return max((int(k.split(".")[2]) + 1 for k in keys if k.startswith("encoder.downs.")), default=0)


def levels_text(first: int, last: int) -> str:
    return f"level {first}" if first == last else f"levels {first}-{last}"


def transfer_text(path: Path, loaded: list[str], pretrained: list[str], own: list[str]) -> str:
    """The log line of --init-from: tensors copied out of the autoencoder's, and levels left out.

    Using the first levels of a deeper autoencoder is legitimate, but silently dropping its deeper
    ones hides that part of the pretraining went unused: the line says so, and why.
    """
    theirs, ours = encoder_depth(pretrained), encoder_depth(own)
    text = (f"encoder initialised from {path} ({len(loaded)} of its {len(pretrained)} encoder tensors: "
            f"the stem{' and ' + levels_text(1, min(theirs, ours)) if min(theirs, ours) else ''}")
    why = f"the autoencoder has --depth {theirs}, this model --depth {ours}"
    if theirs > ours:
        text += f"; its {levels_text(ours + 1, theirs)} left out: {why}"
    elif ours > theirs:
        verb = "starts" if ours == theirs + 1 else "start"
        text += f"; this model's {levels_text(theirs + 1, ours)} {verb} random: {why}"
    return text + ")"
