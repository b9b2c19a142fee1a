"""Predict every page (test pages or a folder) and stream the submission CSV, the pages of one
text cleaned together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import time
from typing import ClassVar

from tqdm import tqdm

from src.common.config import config_problems
from src.common.errors import DataError
from src.common.files import archive, ensure_writable_dir
from src.common.runtime import setup_runtime
from src.common.wording import counted, listed
from src.data.competition import DEFAULT_DATA_DIR, PAGE_SIZES
from src.data.pages import IMAGE_SUFFIXES, list_images, load_page, png_size, save_page
from src.data.synthetic import prepare_or_synthesize
from src.inference.consensus import clean_together, compact, describe
from src.inference.tiles import SHIFTS, non_finite, predict_page
from src.models.checkpoints import load_model
from src.submission.reader import CSV_NAME, SubmissionError, is_page_id, reference_problems
from src.submission.writer import submission_path, write_submission


@dataclass
class PredictConfig:
    """`python -m src.make_submission`'s settings; the kernel fills the same fields."""
    checkpoint: list[Path] = field(default_factory=list)   # denoiser checkpoints, averaged
    data_dir: Path = DEFAULT_DATA_DIR     # the competition zip or its folders: the test pages
    images: Path | None = None            # a folder of PNG pages instead of the test pages
    sample: Path | None = None            # sample submission to check ids against (default: data_dir's)
    out: Path | str = Path("submissions/submission.csv")   # .zip or .gz compresses
    compress: str | None = None           # zip | gz
    png_dir: Path | None = None           # also keep each cleaned page as <png_dir>/<page>.png
    # tile, overlap and tta: validation's defaults (DenoiserConfig's; a test keeps them equal)
    tile: int = 1024                      # px; 1024 takes a competition page whole
    overlap: int = 32                     # px shared by neighbouring tiles, blended
    batch_size: int = 4                   # tiles per forward pass
    tta: bool = True                      # average the 4 flips
    shifts: int = len(SHIFTS)             # moved copies of each page (SHIFTS)
    consensus: bool | None = None         # None: on for test pages and competition-sized --images
    device: str = "auto"
    amp: bool = True                      # fp16 on CUDA, bf16 with an fp32 last layer on AMX CPUs
    threads: int = 0

    limits: ClassVar[dict] = {}   # config_problems' per-config bounds: none beyond its LIMITS


def check_config(cfg: PredictConfig) -> list[str]:
    """What would fail (or run for hours) only once pages are being predicted, one line each; resolves
    cfg.out to the file written and cfg.compress to its compression."""
    world = os.environ.get("WORLD_SIZE", "1")
    if world != "1":   # else every process would predict every page and write the same file
        return [f"WORLD_SIZE={world} (torchrun?): it runs as one process, which averages any --checkpoint "
                f"flags itself; start it with python -m src.make_submission"]
    # the training config's checks, so both commands accept and word these flags alike
    problems = config_problems(cfg)
    if problems:
        return problems
    raw = str(cfg.out)
    cfg.out = Path(cfg.out)
    if raw.endswith(("/", os.sep)):   # else written as a file of that name, or refused only at the end
        return [f"--out {raw}: a trailing slash names a folder; name a file such as {cfg.out / CSV_NAME}"]
    try:
        cfg.out, cfg.compress = submission_path(cfg.out, cfg.compress)
    except ValueError:
        return [f"--compress {cfg.compress} contradicts --out {cfg.out}; "
                f"drop --compress (the name picks it) or rename --out"]
    if cfg.out.is_dir():   # else found only when the finished file is renamed into place
        return [f"--out {cfg.out}: is a folder; name a file such as {cfg.out / CSV_NAME}"]
    return reference_problems(sample=cfg.sample)   # else found after every page is predicted


def run(args: PredictConfig, log=print) -> Path:
    """Predict the pages and write the CSV (args checked by `check_config`); returns the file written."""
    t0 = time.perf_counter()
    out, compress = args.out, args.compress   # resolved by check_config
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
                               tta=args.tta, shifts=args.shifts, device=device, amp=args.amp,
                               views=args.consensus)
            problem = non_finite(out[0] if args.consensus else out)   # the average holds every view
            if problem:   # now: compact would make them 0 (ink) for the consensus, and hide the fault
                raise SubmissionError(f"{page}: {problem}")
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

    kept = archive([out], keep=True)   # the earlier submission, which this one replaces once written
    try:
        rows = write_submission(predictions(), out, compress=compress, sample=sample)
    except BaseException:
        for earlier in kept:   # still in its place
            earlier.unlink(missing_ok=True)
            if not any(earlier.parent.iterdir()):
                earlier.parent.rmdir()
        raise
    log(f"wrote {rows:,} rows for {len(pages)} pages in {time.perf_counter() - t0:.1f} s -> {out}"
        + ("" if sample else " (no sample submission: ids not cross-checked)")
        + (f"; cleaned pages in {args.png_dir}" if args.png_dir is not None else "")
        + "".join(f"; the earlier one kept as {earlier}" for earlier in kept))
    return out


def check_names(folder: Path, pages: list[Path], log) -> None:
    """Say now what --images will not give: files skipped as not PNG, and ids Kaggle's format lacks."""
    skipped = sorted(p.name for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."))
    if skipped:
        log(f"{folder}: skipping {counted(len(skipped), 'file')} other than PNG pages: {listed(skipped, 5)}")
    named = [p.name for p in pages if not is_page_id(p.stem)]
    if named:   # still cleaned, and kept by --png-dir; but their CSV rows score nowhere
        log(f"warning: {len(named)} of {len(pages)} pages are not named by a page number "
            f"({listed(named, 5)}): their ids in the CSV "
            f"(<name>_<row>_<col>) are not Kaggle's, and validate_submission reports them as malformed. "
            f"Name pages <number>.png to score them with validate_submission --truth")
