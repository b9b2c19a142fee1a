"""Typed run configurations, presets, and their command-line overrides.

Each command has one dataclass; every field is a `--flag` (underscores become dashes), a preset
sets several fields at once, explicit flags win over the preset, unknown flags are an error. The
resolved config is stored in every checkpoint, so a run describes itself.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields
import inspect
import math
from pathlib import Path
import re
from typing import Any

# Allowed ranges of the fields, by name, for every config that has them: (low, low allowed, high,
# high allowed). A value outside fails at parse time, naming the flag, not deep inside a run: a batch
# size of 0 crashes mid-training, --steps-per-epoch 0 "trains" at loss 0.
LIMITS: dict[str, tuple[float, bool, float, bool]] = {
    **dict.fromkeys(["epochs", "steps_per_epoch", "batch_size", "patch_size", "width", "code", "tile",
                     "val_every"], (1, True, math.inf, True)),
    **dict.fromkeys(["depth", "refine", "overlap", "folds", "fold", "seed", "split_seed", "threads",
                     "warmup_epochs", "weight_decay", "grad_clip", "clip_factor", "l1", "kl_weight",
                     "eval_digits", "train_eval_digits", "probe_digits"], (0, True, math.inf, True)),
    **dict.fromkeys(["val_fraction", "dropout"], (0, True, 1, False)),
    "test_fraction": (0, False, 1, False),   # Digit Recognizer's test.csv has no labels: hold some out
    "photometric": (0, True, 1, True),
    "beta2": (0, False, 1, False),
    "lr": (0, False, math.inf, True),
    "workers": (-1, True, math.inf, True),
}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_problems(cfg) -> list[str]:
    """What is wrong with a config's values, one line per flag (empty when it can run)."""
    limits = {**LIMITS, **cfg.limits}
    problems = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        # No field takes inf as "none" (--grad-clip 0 is off): inf and NaN only train to NaN or overflow
        # once the pages have loaded, so they are refused here, with a reason of their own.
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{flag(f.name)} {value}: must be a finite number")
        elif f.name in limits and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, low_ok, high, high_ok = limits[f.name]
            above = low <= value if low_ok else low < value
            if not (above and (value <= high if high_ok else value < high)):
                bound = "" if math.isinf(high) else f" and {'at most' if high_ok else 'below'} {high:g}"
                problems.append(f"{flag(f.name)} {value}: must be {'at least' if low_ok else 'above'} "
                                f"{low:g}{bound}")
    for name, allowed in getattr(cfg, "choices", {}).items():
        if getattr(cfg, name) not in allowed:
            problems.append(f"{flag(name)} {getattr(cfg, name)}: choose one of: {', '.join(allowed)}")
    if getattr(cfg, "device", "auto") and not DEVICE.fullmatch(cfg.device):
        problems.append(f"--device {cfg.device}: choose auto, cpu, cuda or cuda:N")
    if hasattr(cfg, "overlap") and cfg.overlap >= cfg.tile >= 1:
        problems.append(f"--overlap {cfg.overlap}: must be below --tile {cfg.tile} (tiles step by their "
                        f"difference)")
    if hasattr(cfg, "fold") and cfg.folds <= 1 and cfg.fold != type(cfg).fold:   # else silently unused
        problems.append(f"--fold {cfg.fold}: needs --folds 2 or more; without it --val-fraction "
                        f"{cfg.val_fraction:g} of the pages is held out")
    if getattr(cfg, "folds", 0) > 1 and not 0 <= cfg.fold < cfg.folds:
        problems.append(f"--fold {cfg.fold}: must be in 0..{cfg.folds - 1} for --folds {cfg.folds}")
    name = getattr(cfg, "name", None)   # checkpoints and plots are <models_dir>/<name>_*: found only there
    if name and (Path(name).name != name or name in (".", "..") or "\\" in name):
        problems.append(f"--name {name}: a name, not a path (its files go to --models-dir)")
    elif name == "" and type(cfg).name:
        problems.append("--name: must not be empty")
    if hasattr(cfg, "patch_size") and cfg.patch_size < 2 ** (cfg.depth + 1):
        problems.append(f"--patch-size {cfg.patch_size}: the U-Net halves a patch {cfg.depth + 1} times at "
                        f"--depth {cfg.depth}, so it needs at least {2 ** (cfg.depth + 1)} px")
    return problems


def check_config(cfg) -> None:
    """ValueError listing config_problems: a config built in Python, not parsed, is checked the same."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))


def field_help(cls) -> dict[str, str]:
    """Each field's trailing comment in the class source, which is its --help text.

    The comments stay where a reader of the config looks; without the source (a frozen or bundled
    copy) --help lists the flags and their defaults only.
    """
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments = dict(re.findall(r"^\s+(\w+): [^=\n]+=[^#\n]+#\s*(.+?)\s*$", source, re.M))
    return {f.name: comments[f.name] for f in fields(cls) if f.name in comments}


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, help: str) -> None:
    if f.type in ("bool", bool):
        parser.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                            help=help)
    else:
        conv = {"int": int, "float": float, "str": str}.get(
            f.type if isinstance(f.type, str) else f.type.__name__, str)
        parser.add_argument(flag(f.name), dest=f.name, type=conv, default=None, metavar=f.name.upper(),
                            help=help)


def _default_text(cls, presets: dict[str, dict[str, Any]], name: str) -> str:
    """`default: 32; smoke: 8` -- the value without --preset, and where a preset sets another."""
    base = cls.preset
    value = presets[base].get(name, getattr(cls, name))
    text = f"default: {'none' if value == '' else format(value, 'g') if isinstance(value, float) else value}"
    others = [f"{p}: {v[name]}" for p, v in presets.items() if p != base and name in v]
    return "; ".join([text, *others])


def parse_config(cls, presets: dict[str, dict[str, Any]], argv=None, description: str = "", prog=None):
    """Build a `cls` from defaults, then `--preset`, then explicit flags.

    Unknown flags and values out of range exit with code 2 and a message naming the flag.
    """
    # No abbreviations: `--epoch 1` silently meaning `--epochs 1` is how a typo goes unnoticed.
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     usage=f"{prog or '%(prog)s'} [--preset {{{','.join(presets)}}}] "
                                           f"[--FLAG VALUE ...]  (--help lists the flags)",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    helps = field_help(cls)
    for f in fields(cls):
        if f.name == "preset":
            parser.add_argument("--preset", choices=list(presets), default=cls.preset,
                                help=f"a recipe of the flags below (default: {cls.preset})")
        else:
            text = helps.get(f.name, "")
            _add_field(parser, f, f"{text} ({_default_text(cls, presets, f.name)})".lstrip())
    args = parser.parse_args(argv)
    values = dict(presets[args.preset])
    values.update({k: v for k, v in vars(args).items() if v is not None})
    cfg = cls(**values)
    problems = config_problems(cfg)
    if problems:
        parser.error("\n  ".join(problems))
    return cfg


# What a resumed run may change: where and how it runs, not what it trains. --epochs may grow or
# shrink (the schedule is recomputed, `src.training.loop.fit` says how); any other change would make
# the resumed run neither the checkpoint's run nor the new one, so it is refused (a new --width does not
# fit the saved weights; a new --lr would be ignored: the scheduler's state holds the old one).
RUNTIME_FIELDS = {"preset", "data_dir", "data", "results_dir", "models_dir", "name", "resume", "init_from",
                  "device", "amp", "compile", "cuda_graph", "workers", "threads", "tile", "overlap", "tta",
                  "val_every", "eval_digits", "train_eval_digits", "probe_digits", "epochs", "degraded_dir"}


def as_flags(name: str, value) -> str:
    if isinstance(value, bool):
        return flag(name) if value else flag(f"no_{name}")
    return f"{flag(name)} {value}"


def resume_conflicts(saved: dict[str, Any], cfg) -> list[str]:
    """`--flag saved (now: new)` for each training setting that differs from a checkpoint's config.

    A field the checkpoint lacks is newer than its run, which ran as the field's default does (what
    `config_from_dict` fills in): a run from before --split-by resumed with --split-by text is refused.
    """
    now = dataclasses.asdict(cfg)
    saved = {f.name: f.default for f in fields(cfg) if f.default is not dataclasses.MISSING} | saved
    if saved.get("folds", 0) <= 1 and "fold" in saved:   # unused: a run from before --fold needed --folds
        saved["fold"] = type(cfg).fold
    return [f"{as_flags(k, saved[k])} (now: {as_flags(k, now[k])})" for k in now
            if k in saved and k not in RUNTIME_FIELDS and saved[k] != now[k]]


def config_from_dict(cls, values: dict[str, Any]):
    """Rebuild a config stored in a checkpoint; keys this version does not know are an error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**values)
