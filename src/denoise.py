"""Clean scans of your own: python -m src.denoise scan.jpg letters/ --out cleaned

Reads PNG, JPEG, TIFF (every page), BMP, WebP, HEIC, AVIF and PDF (a scanned page at its own resolution,
--dpi overrides), files or folders of them. Writes one cleaned 8-bit grayscale PNG per page (1-bit with
--bilevel) into --out, named after its source (scan.jpg -> scan.png; page k of letter.pdf or of a
multi-page TIFF -> letter-k.png) at the resolution the scan records, and letter.pdf for a PDF. Each page's
letters are measured (--scale overrides) and the page is cleaned at a size the model learnt, then brought
back to its own (--crop cuts a page out of a photo of it first, --deskew turns it upright after). A file
that cannot be read is named and skipped, the others are cleaned, and the exit code is then 3 (2 is a
bad flag's). Run again, it keeps the pages --out holds from the same source, model and settings (its
denoise.jsonl), so a stopped run goes on.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
import sys
import time

from tqdm import tqdm

from src.common.config import config_problems
from src.common.errors import DataError
from src.common.files import ensure_writable_dir
from src.common.runner import run_command
from src.common.runtime import setup_runtime
from src.common.wording import counted
from src.data.ledger import Ledger
from src.data.scans import DEFAULT_DPI, MAX_DPI, MIN_DPI, check_outputs, find_scans, open_scan
from src.inference.folder import clean_file, page_cleaner
from src.inference.scale import DEFAULT_CHECKPOINTS, load_denoisers
from src.inference.tiles import SHIFTS, TILE, WHOLE
from src.models.checkpoints import weights_digest
from src.training.config import DenoiserConfig

SKIPPED = 3   # the exit code when some files were skipped; argparse exits 2 for bad flags


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.denoise", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="scan files, or folders of them")
    p.add_argument("--out", type=Path, required=True, help="folder for the cleaned pages (made if needed)")
    p.add_argument("--checkpoint", type=Path, action="append",
                   help=f"denoiser checkpoint; repeat to average several (default: the first of "
                        f"{' and '.join(map(str, DEFAULT_CHECKPOINTS))} that exists)")
    p.add_argument("--scale", type=float,
                   help="how many times larger the pages' text is than the model's: each page is shrunk "
                        "by this factor to be cleaned (1: as it is); default: measured on each page")
    p.add_argument("--dpi", type=int, help=f"resolution PDF pages are rendered at, and of the cleaned PDF "
                   f"(default: a scanned page's own, up to {MAX_DPI}; {DEFAULT_DPI} for others)")
    p.add_argument("--bilevel", action="store_true", help="black and white pages: 1-bit PNGs, and CCITT G4 "
                   "images in a PDF, several times smaller than gray ones (docs/denoise.md)")
    p.add_argument("--crop", action="store_true", help="photos of pages: cut each page out of its photo by "
                   "its outline and square it up before cleaning (a scan, whose paper fills it, stays whole)")
    p.add_argument("--deskew", action="store_true", help="turn each page upright by its lines of text (up to "
                   "10 degrees either way), on a sheet of its size")
    p.add_argument("--keep-solid", action="store_true", help="keep all ink wider than the model's strokes "
                   "as the page shows it, grey or over the text too (by default only type: headings, bars)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="average predictions over the 4 flips (4x the time, lower RMSE; default: on)")
    p.add_argument("--shifts", type=int, default=0, choices=range(len(SHIFTS) + 1), metavar="N",
                   help=f"also clean each page moved by a few pixels, 0 to {len(SHIFTS)} times, and average "
                        f"(one more pass each; default: %(default)s)")
    p.add_argument("--tile", type=int, default=0,
                   help=f"side in pixels of the tiles a page is cleaned in; 0: the whole page where it fits "
                        f"in {WHOLE}, else {TILE} (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=DenoiserConfig.overlap,
                   help="pixels neighbouring tiles share, 0 to below --tile (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision, as make_submission's --amp (default: on)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: OMP_NUM_THREADS if set, else all")
    args = p.parse_args(argv)
    problems = config_problems(DenoiserConfig(tile=args.tile or TILE, overlap=args.overlap,
                                              batch_size=args.batch_size, device=args.device,
                                              threads=args.threads))
    if args.scale is not None and not 0 < args.scale < 1e3:
        problems.append(f"--scale {args.scale}: must be above 0 and below 1000 (1 cleans pages as they are)")
    if args.dpi is not None and not MIN_DPI <= args.dpi <= 1200:
        problems.append(f"--dpi {args.dpi}: must be {MIN_DPI} to 1200")
    if problems:
        p.error("\n  ".join(problems))
    return args


def clean(args: argparse.Namespace, skipped: list[Path]) -> None:
    """Clean every page of args.inputs into args.out; files that cannot be read are named, and listed in
    `skipped` (as are files with a page that cannot be read)."""
    t0 = time.perf_counter()

    def skip(path: Path, line: str) -> None:
        skipped.append(path)
        tqdm.write(f"skipped {line}", file=sys.stderr)

    device = setup_runtime(args.device, args.threads).device
    # first: a missing checkpoint is the likeliest error
    models, target, zoom = load_denoisers(args.checkpoint, device, log=tqdm.write)
    shaping = {k: getattr(args, k) for k in ("tta", "shifts", "overlap", "amp", "keep_solid")}   # its result
    predict = dict(shaping, batch_size=args.batch_size, device=device)
    clean_page = page_cleaner(models, target, zoom, tqdm.write, scale=args.scale, tile=args.tile,
                              crop=args.crop, deskew=args.deskew, bilevel=args.bilevel, **predict)
    finishing = {k: True for k in ("crop", "bilevel", "deskew") if getattr(args, k)}   # off: as before
    ledger = Ledger(args.out, dict(shaping, models=weights_digest(models), scale=args.scale, tile=args.tile,
                                   **finishing))
    found, missing, notes = find_scans(args.inputs)
    for line in notes:
        tqdm.write(line)
    for path, why in missing:
        skip(path, f"{path}: {why}")
    scans = []
    for path in (p for p in found if not ledger.wrote(p)):   # an --out among the inputs holds its pages
        try:
            scans.append(open_scan(path))
        except DataError as e:
            skip(path, str(e))
    check_outputs(scans, args.out, written=ledger.sources())
    ensure_writable_dir(args.out)
    tally = Counter()
    with tqdm(total=sum(s.pages for s in scans), unit="page", disable=None) as bar:
        for scan in scans:
            try:
                problems = clean_file(scan, args.out, ledger, clean_page, args.dpi, tally, tqdm.write,
                                      bar.update)
            except DataError as e:
                problems = [str(e)]
            for line in problems:
                tqdm.write(f"skipped {line}", file=sys.stderr)
            skipped += [scan.path] if problems else []
            tally["files"] += not problems
    print(f"cleaned {counted(tally['pages'], 'page')} of {counted(tally['files'], 'file')} in "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}"
          + (f"; kept {tally['kept']} cleaned before with the same model and settings ({ledger.path})"
             if tally["kept"] else "")
          + (f"; skipped {len(skipped)} (named above): {', '.join(map(str, skipped))}" if skipped else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    skipped: list[Path] = []
    code = run_command(lambda: clean(args, skipped), interrupted=lambda what: f"{what}; the pages cleaned so "
                       f"far are in {args.out}, and the same command goes on from there")
    return SKIPPED if code == 0 and skipped else code


if __name__ == "__main__":
    sys.exit(main())
