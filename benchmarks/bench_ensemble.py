"""Score denoiser checkpoints alone and averaged, on the pages their training held out.

    python benchmarks/bench_ensemble.py A_best.pt B_best.pt [--data-dir DIR] [--no-tta] [--shifts N]

The held-out pages follow the checkpoints' configs (--val-fraction, --split-seed, --split-by, --folds,
--fold), which must hold out the same pages. Inference is the submission's with `--shifts 3` (its
default; this script's is 0, the setting of most figures in docs/consensus.md): `predict_page`
given several models averages them, as `make_submission --checkpoint A --checkpoint B` does, and the
figure "with consensus" gives pages of one text their weighted interquartile mean, as make_submission does.
Data: as bench_denoiser.py (../shared's zip prepared into .cache/, or --data-dir).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

from bench_denoiser import data_dir_of  # benchmarks/ is on sys.path: this script's folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.common.config import config_from_dict  # noqa: E402
from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.data.splits import text_groups  # noqa: E402
from src.inference.consensus import clean_together, describe  # noqa: E402
from src.inference.metrics import pooled_rmse  # noqa: E402
from src.inference.tiles import SHIFTS, predict_page  # noqa: E402
from src.models.checkpoints import load_checkpoint, model_from_checkpoint  # noqa: E402
from src.training.config import DenoiserConfig  # noqa: E402
from src.training.denoiser import split_train_val  # noqa: E402


def score(models, pages, tta: bool, shifts: int) -> tuple[float, float, float, str]:
    """(pooled RMSE, the same after consensus, seconds, what consensus matched) of the models' averaged
    prediction over pages."""
    t0 = time.perf_counter()
    preds, views = zip(*(predict_page(models, x, tta=tta, shifts=shifts, amp=True, views=True)
                         for x, _ in pages))
    secs = time.perf_counter() - t0   # inference, as make_submission; matching and means: seconds
    together, groups = clean_together(preds, views, [x for x, _ in pages])
    err, err_together = (pooled_rmse(zip(p, (y for _, y in pages))) for p in (preds, together))
    return err, err_together, secs, describe(groups)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--shifts", type=int, default=0, choices=range(len(SHIFTS) + 1))
    args = p.parse_args()
    ckpts = [load_checkpoint(c, "denoiser") for c in args.checkpoints]
    configs = [config_from_dict(DenoiserConfig, c["config"]) for c in ckpts]
    data = prepare_data(data_dir_of(p, args))
    every = load_pairs(data.train_pairs)
    texts = text_groups([y for _, y in every])
    helds = [split_train_val(c, texts)[1] for c in configs]
    if any(held != helds[0] for held in helds):
        p.error(f"the checkpoints held out different pages: {helds}")
    if not helds[0]:
        p.error("the checkpoints were trained on every page (--val-fraction 0): nothing is held out")
    pages = [every[i] for i in helds[0]]
    models = [model_from_checkpoint(c, path) for c, path in zip(ckpts, args.checkpoints)]
    for path, model in zip(args.checkpoints, models):
        err, together, secs, matched = score(model, pages, args.tta, args.shifts)
        print(f"{path.name}: held-out RMSE {err:.5f}, with consensus {together:.5f} ({len(pages)} pages, "
              f"{secs:.1f} s)")
    print(f"consensus: {matched}")   # as matched from the last model's predictions
    if len(models) > 1:
        err, together, secs, _ = score(models, pages, args.tta, args.shifts)
        print(f"average of {len(models)}: held-out RMSE {err:.5f}, with consensus {together:.5f} "
              f"({len(pages)} pages, {secs:.1f} s)")


if __name__ == "__main__":
    main()
