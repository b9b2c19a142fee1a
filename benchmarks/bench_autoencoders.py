"""Does each MNIST autoencoder reach its plateau within 10 minutes on 2 CPU cores?

    python benchmarks/bench_autoencoders.py --variant base --data ../shared/mnist [--threads 1] [...]

Runs `src.pretrain_autoencoder` with the given preset (default: "default") into a temporary folder
(or --out DIR), then checks the pretraining's targets and prints one markdown table row:
  plateau   the test MSE curve is flat over the last quarter of the epochs: it improves by at most
            PLATEAU_REL (5%) of its final value between the start and the end of that quarter (the
            same change of the test objective, BCE + penalty, is printed beside it; the cosine
            schedule anneals to zero, so part of any last-quarter gain is the annealing itself);
  time      the whole command (data loading, training, evaluation, figures, probe) within 600 s;
  MSE       test reconstruction MSE <= 0.01 for base and sparse (the vae has no MSE target);
and reports the linear-probe accuracy. Extra flags go to the command (e.g. --epochs 20). Exit code 1
when a target is missed. Run one variant at a time: they compete for the same cores.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from src.common.config import parse_config  # noqa: E402
from src.common.errors import DataError  # noqa: E402
from src.mnist.config import AUTOENCODER_PRESETS, AutoencoderConfig  # noqa: E402
from src.mnist.recipe import run  # noqa: E402

TIME_LIMIT_S = 600
MSE_TARGET = {"base": 0.01, "sparse": 0.01}
PLATEAU_REL = 0.05
HEADER = ("| variant | preset (epochs x steps x batch, width) | threads | wall time | test MSE | "
          "last-quarter change: test MSE / objective | linear probe | near-zero code | targets |\n"
          "|---|---|---|---|---|---|---|---|---|")


def plateau_change(history: list[dict], key: str = "test_mse") -> tuple[float, int]:
    """((start - end) / end of `key` over the last quarter of the epochs, epochs in that quarter).

    Positive while the curve still falls; <= PLATEAU_REL counts as flat.
    """
    values = [r[key] for r in history if key in r]
    q = max(1, len(values) // 4)
    if len(values) < 2:
        return float("nan"), q
    start, end = values[-q - 1], values[-1]
    return (start - end) / end, q


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Any other flag (--variant, --data, --preset, --epochs, --threads, "
                                       "...) goes to the training run: "
                                       "python -m src.pretrain_autoencoder --help lists them.")
    p.add_argument("--out", type=Path, default=None,
                   help="keep checkpoints and figures here (default: a temporary folder)")
    args, rest = p.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ae-") as tmp:
        out = args.out or Path(tmp)
        dirs = ["--models-dir", str(out / "models"), "--results-dir", str(out / "results")]
        cfg = parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, [*dirs, *rest])
        t0 = time.perf_counter()
        try:
            result = run(cfg, log=lambda line: print(line, flush=True))
        except (DataError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        wall = time.perf_counter() - t0
    m = result["metrics"]
    change, q = plateau_change(result["history"])
    objective_change, _ = plateau_change(result["history"], "test_loss")
    target = MSE_TARGET.get(cfg.variant)
    checks = {"plateau": change <= PLATEAU_REL, "time": wall <= TIME_LIMIT_S,
              **({"MSE": m["test_mse"] <= target} if target else {})}
    verdict = ", ".join(f"{k} {'ok' if ok else 'MISSED'}" for k, ok in checks.items())
    threads = cfg.threads or os.cpu_count()
    print(HEADER)
    print(f"| {cfg.variant} | {cfg.preset} ({cfg.epochs} x {cfg.steps_per_epoch} x {cfg.batch_size}, "
          f"{cfg.width}) | {threads} | {wall:.0f} s | {m['test_mse']:.5f}"
          f"{f' (<= {target})' if target else ''} | "
          f"{-change:+.1%} / {-objective_change:+.1%} (last {q} epochs) | "
          f"{m['probe_acc']:.4f} | {m['code_near_zero']:.1%} | {verdict} |")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
