"""Write the competition CSV: python -m src.make_submission --checkpoint models/denoiser_best.pt

Pages come from --images (any folder of PNGs) or the test pages found in --data-dir; several
--checkpoint flags average a fold ensemble; flip test-time augmentation is on unless --no-tta.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from src.checkpoints import CheckpointError, load_model
from src.config import DenoiserConfig  # inference defaults = those validation used
from src.data import DEFAULT_DATA_DIR, DataError, list_images, load_page, prepare_or_synthesize
from src.inference import predict_page
from src.submission import SubmissionError, write_submission
from src.train import resolve_device


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="denoiser checkpoint; repeat to average several (fold ensemble)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--images", type=Path, help="folder of PNG pages (default: the test pages in --data-dir)")
    p.add_argument("--sample", type=Path,
                   help="sample submission to check ids against (default: the one in --data-dir)")
    p.add_argument("--out", type=Path, default=Path("submissions/submission.csv"))
    p.add_argument("--compress", choices=["zip", "gz"], help="write a compressed CSV (.zip or .gz appended)")
    p.add_argument("--tile", type=int, default=DenoiserConfig.tile)
    p.add_argument("--overlap", type=int, default=DenoiserConfig.overlap)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=DenoiserConfig.tta,
                   help="average predictions over the 4 flips (4x the time, lower RMSE: README)")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def run(args: argparse.Namespace, log=print) -> Path:
    t0 = time.perf_counter()
    device = resolve_device(args.device)
    models = [load_model(c, kind="denoiser", device=device)[0] for c in args.checkpoint]
    sample = args.sample
    if args.images is not None:
        pages = list_images(args.images)
    else:
        data = prepare_or_synthesize(args.data_dir, log=log)
        pages, sample = data.test_images, sample or data.sample_submission
        if not pages:
            raise DataError(f"{args.data_dir}: no test pages found")
    out = args.out if args.compress is None else args.out.with_name(f"{args.out.name}.{args.compress}")
    preds = ((p.stem, predict_page(models, load_page(p), tile=args.tile, overlap=args.overlap,
                                   batch_size=args.batch_size, tta=args.tta, device=device, amp=True))
             for p in tqdm(pages, desc="pages", disable=None))
    rows = write_submission(preds, out, compress=args.compress, sample=sample)
    log(f"wrote {rows:,} rows for {len(pages)} pages in {time.perf_counter() - t0:.1f} s -> {out}"
        + ("" if sample else " (no sample submission: ids not cross-checked)"))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DataError, CheckpointError, SubmissionError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
