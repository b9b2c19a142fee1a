"""Quality benchmark: train a preset on the real training pairs, score held-out whole pages.

    python benchmarks/bench_denoiser.py --preset quick [--data-dir DIR] [-- extra train_denoiser flags]

Trains with `src.train_denoiser` on the pages left after the seeded validation split, then scores
the held-out pages with the submission path (`predict_page`, clipped, pooled RMSE), and prints the
training time (patch steps + periodic validation, excluding data loading and the final report).
Data: ../shared/competition/denoising-dirty-documents.zip prepared into .cache/ (git-ignored).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from src.common.config import parse_config  # noqa: E402
from src.training.config import DENOISER_PRESETS, DenoiserConfig  # noqa: E402
from src.training.denoiser import run  # noqa: E402
from src.training.loop import checkpoint_paths  # noqa: E402
from src.training.loop import run_training  # noqa: E402

SHARED_ZIP = ROOT.parent / "shared" / "competition" / "denoising-dirty-documents.zip"


def real_data_dir() -> Path:
    cache = ROOT / ".cache" / "competition"
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / SHARED_ZIP.name
    if not link.exists():
        link.symlink_to(SHARED_ZIP)
    return cache


def data_dir_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """--data-dir, else ../shared's zip prepared into .cache/; exit 2 when there is neither."""
    if args.data_dir is None and not SHARED_ZIP.is_file():
        p.error(f"no data: pass --data-dir or provide {SHARED_ZIP}")
    return args.data_dir or real_data_dir()


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The flags of a benchmark that trains: --preset, --data-dir, then train_denoiser's after --."""
    p.add_argument("--preset", default="quick", choices=sorted(DENOISER_PRESETS))
    p.add_argument("--data-dir", type=Path)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="extra train_denoiser flags after --")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p)
    args = p.parse_args()
    data_dir = data_dir_of(p, args)
    extra = [a for a in args.rest if a != "--"]
    models = ROOT / ".cache" / f"bench_{args.preset}"
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS,
                       ["--preset", args.preset, "--data-dir", str(data_dir),
                        "--models-dir", str(models), *extra])
    t0 = time.perf_counter()
    result = {}
    # train_denoiser's handler: one `error:` line for bad flags, data or checkpoints, and on Ctrl-C
    # (gpu_check.sh stops it at its time budget) the command that resumes this benchmark
    argv = [*sys.argv[1:], *([] if "--" in sys.argv[1:] else ["--"])]   # --resume must follow the --
    rc = run_training(lambda c: result.update(run(c)), cfg, command="benchmarks.bench_denoiser", argv=argv,
                      kind="denoiser", last_path=checkpoint_paths(models, cfg.name)[1])
    if rc:
        sys.exit(rc)
    wall = time.perf_counter() - t0
    hist = result["history"]
    train_s = sum(r["train_s"] + r.get("val_s", 0.0) for r in hist)
    best = min((r["score"] for r in hist if "score" in r), default=float("nan"))
    import torch
    where = (torch.cuda.get_device_name() if torch.cuda.is_available() and cfg.device != "cpu"
             else f"CPU, {torch.get_num_threads()} of {os.cpu_count()} cores")
    print(f"| {args.preset} | {cfg.model} w{cfg.width} d{cfg.depth} r{cfg.refine} bs{cfg.batch_size} "
          f"| {best:.5f} | {train_s / 60:.1f} min | {wall / 60:.1f} min | {where} |")
    print(f"{args.preset}: held-out RMSE {best:.5f}, training {train_s:.0f} s (wall {wall:.0f} s)")


if __name__ == "__main__":
    main()
