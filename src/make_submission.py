"""Write the competition CSV: python -m src.make_submission --checkpoint models/denoiser_best.pt

Pages come from --images (any folder of PNGs) or the test pages found in --data-dir; several
--checkpoint flags average a fold ensemble; flip test-time augmentation is on unless --no-tta, and so
are 3 copies of each page moved by a few pixels unless --shifts 0.
Test pages that show the same text (the competition's are 18 texts of 4 pages each) take the weighted
interquartile mean of their predictions (of each flip and shift of each page by each checkpoint) unless
--no-consensus; pages of --images too when all have the competition's sizes, or with --consensus.
--png-dir also keeps each cleaned page as a PNG, to look at (or to clean scans of your own).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.checkpoints import CheckpointError, load_model
from src.consensus import clean_together, compact, describe
from src.config import DenoiserConfig, config_problems  # inference defaults = those validation used
from src.data import (DEFAULT_DATA_DIR, IMAGE_SUFFIXES, PAGE_SIZES, DataError, list_images, load_page,
                      png_size, prepare_or_synthesize, save_page)
from src.files import Terminated, ensure_writable_dir, interrupt_code, sigterm_as_interrupt
from src.inference import SHIFTS, predict_page
from src.submission import (CSV_NAME, SubmissionError, is_page_id, reference_problems, submission_path,
                            write_submission)
from src.train import setup_runtime


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.make_submission", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="denoiser checkpoint file; repeat to average several (fold ensemble)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"folder holding the competition zip or its folders (default: {DEFAULT_DATA_DIR})")
    p.add_argument("--images", type=Path, help="folder of PNG pages to predict instead of the test pages")
    p.add_argument("--sample", type=Path,
                   help="sample submission to check ids against (default: the one in --data-dir)")
    p.add_argument("--out", default="submissions/submission.csv",   # a str until checked: Path drops a "/"
                   help="file to write; a name ending .zip or .gz is compressed (default: %(default)s)")
    p.add_argument("--compress", choices=["zip", "gz"],
                   help="compress the CSV; .zip or .gz is appended to --out unless it ends so already")
    p.add_argument("--png-dir", type=Path,
                   help="also write each cleaned page as <png-dir>/<page>.png (8-bit grayscale)")
    p.add_argument("--tile", type=int, default=DenoiserConfig.tile,
                   help="side in pixels of the tiles a page is predicted in (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=DenoiserConfig.overlap,
                   help="pixels neighbouring tiles share, 0 to below --tile (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=DenoiserConfig.tta,
                   help="average predictions over the 4 flips (4x the time, lower RMSE: README; default: on)")
    p.add_argument("--shifts", type=int, default=len(SHIFTS), choices=range(len(SHIFTS) + 1), metavar="N",
                   help=f"also predict each page moved by a few pixels, 0 to {len(SHIFTS)} times, and "
                        f"average (one more pass each: {len(SHIFTS)} took 3.4x the time of 0 for about 3 %% "
                        f"lower RMSE with consensus, README; default: %(default)s)")
    p.add_argument("--consensus", action=argparse.BooleanOptionalAction,
                   help="pages of the same text take the weighted interquartile mean of their "
                        "predictions (lower RMSE: README; holds every prediction in memory, about 0.5 MB a "
                        "page and view (4 views with --tta, per checkpoint and shift); default: on for the "
                        "test pages, and for --images when every page has a size of the competition's; "
                        "off for other images, where copies of one form filled in by hand would lose the "
                        "handwriting)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads; 0: OMP_NUM_THREADS if set, else every core (default: %(default)s)")
    args = p.parse_args(argv)
    check_flags(p, args)
    return args


def check_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse now the values that would fail (or run for hours) only once pages are being predicted."""
    world = os.environ.get("WORLD_SIZE", "1")
    if world != "1":   # else every process would predict every page and write the same file
        p.error(f"WORLD_SIZE={world} (torchrun?): it runs as one process, which averages any --checkpoint "
                f"flags itself; start it with python -m src.make_submission")
    # The training config's checks, so both commands accept and word these flags alike.
    inference = DenoiserConfig(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                               device=args.device, threads=args.threads)
    problems = config_problems(inference)
    if problems:   # all of them at once, as parse_config reports the training flags
        p.error("\n  ".join(problems))
    raw, args.out = args.out, Path(args.out)
    if raw.endswith(("/", os.sep)):   # else written as a file of that name, or refused only at the end
        p.error(f"--out {raw}: a trailing slash names a folder; name a file such as {args.out / CSV_NAME}")
    try:   # from here on args.out is the file written and args.compress its compression
        args.out, args.compress = submission_path(args.out, args.compress)
    except ValueError:
        p.error(f"--compress {args.compress} contradicts --out {args.out}; "
                f"drop --compress (the name picks it) or rename --out")
    if args.out.is_dir():   # else found only when the finished file is renamed into place
        p.error(f"--out {args.out}: is a folder; name a file such as {args.out / CSV_NAME}")
    problems = reference_problems(sample=args.sample)   # else found after every page is predicted
    if problems:
        p.error("\n  ".join(problems))


def run(args: argparse.Namespace, log=print) -> Path:
    t0 = time.perf_counter()
    out, compress = args.out, args.compress   # resolved by check_flags
    for folder in (out.parent, args.png_dir):   # fail now, not after minutes of predicting
        if folder is not None:
            ensure_writable_dir(folder)
    device = setup_runtime(args.device, args.threads).device
    models = [load_model(c, kind="denoiser", device=device)[0] for c in args.checkpoint]
    sample = args.sample
    if args.images is not None:
        pages = list_images(args.images)
        check_names(args.images, pages, log)
    else:
        data = prepare_or_synthesize(args.data_dir, log=log)
        pages, sample = data.test_images, sample or data.sample_submission
        if not pages:
            raise DataError(f"{args.data_dir}: no test pages found")
    if args.consensus is None:   # the competition's pages repeat their texts; other scans need not
        args.consensus = args.images is None or all(png_size(p) in PAGE_SIZES for p in pages)
        if args.images is not None and args.consensus:
            sizes = " or ".join(f"{w}x{h}" for h, w in sorted(PAGE_SIZES))
            log(f"{args.images}: every page has a size of the competition's ({sizes} px), so pages of one "
                f"text are cleaned together; --no-consensus cleans each alone")
    if args.png_dir is not None and args.png_dir.resolve() in {p.parent.resolve() for p in pages}:
        raise DataError(f"--png-dir {args.png_dir}: holds the pages being cleaned, which the cleaned ones "
                        f"would overwrite; name another folder")

    def predicted():
        for page in tqdm(pages, desc="pages", disable=None):
            x = load_page(page)
            out = predict_page(models, x, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                               tta=args.tta, shifts=args.shifts, device=device, amp=True,
                               views=args.consensus)
            bad = (~np.isfinite(out[0] if args.consensus else out)).sum()   # the average holds every view
            if bad:   # now: compact would make them 0 (ink) for the consensus, and hide the fault
                raise SubmissionError(f"{page}: the model predicted {bad:,} NaN or inf pixels (a broken "
                                      f"checkpoint, or fp16 overflowing on a GPU: try --device cpu)")
            yield (out[0], compact(out[1]), x) if args.consensus else out   # kept until every page is in

    def predictions():
        preds = predicted()
        if args.consensus:   # all pages first; without it each page is written as soon as it is predicted
            preds, views, noisy = zip(*preds)
            preds, groups = clean_together(preds, views, noisy)
            log(describe(groups))
        for page, pred in zip(pages, preds):
            if args.png_dir is not None:
                save_page(args.png_dir / f"{page.stem}.png", pred)
            yield page.stem, pred

    rows = write_submission(predictions(), out, compress=compress, sample=sample)
    log(f"wrote {rows:,} rows for {len(pages)} pages in {time.perf_counter() - t0:.1f} s -> {out}"
        + ("" if sample else " (no sample submission: ids not cross-checked)")
        + (f"; cleaned pages in {args.png_dir}" if args.png_dir is not None else ""))
    return out


def check_names(folder: Path, pages: list[Path], log) -> None:
    """Say now what --images will not give: files skipped as not PNG, and ids Kaggle's format lacks."""
    skipped = sorted(p.name for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."))
    if skipped:
        log(f"{folder}: skipping {len(skipped)} files that are not PNG pages: {', '.join(skipped[:5])}"
            + (", ..." if len(skipped) > 5 else ""))
    named = [p.name for p in pages if not is_page_id(p.stem)]
    if named:   # still cleaned, and kept by --png-dir; but their CSV rows score nowhere
        log(f"warning: {len(named)} of {len(pages)} pages are not named by a page number "
            f"({', '.join(named[:5])}{', ...' if len(named) > 5 else ''}): their ids in the CSV "
            f"(<name>_<row>_<col>) are not Kaggle's, and validate_submission reports them as malformed. "
            f"Name pages <number>.png to score them with validate_submission --truth")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            run(args)
    except (DataError, CheckpointError, SubmissionError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:   # write_submission has removed its temporary file
        kept = f" ({args.out} is left as it was)" if args.out.exists() else ""
        print(f"\n{'stopped by SIGTERM' if isinstance(e, Terminated) else 'interrupted'}; no submission "
              f"written{kept}", file=sys.stderr)
        return interrupt_code(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
