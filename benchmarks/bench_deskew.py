"""Turned pages: how well `denoise --deskew` finds a page's skew, and what turning it upright does for OCR.

    python benchmarks/bench_deskew.py [--checkpoint models/general_best.pt] [--data-dir competition]
        [--pages 48] [--max-angle 8] [--seed 0] [--no-ocr]

The clean pages of bench_unseen_noise.py (the checkpoint's held-out pages, one per text, and rendered
pages of a stream training never draws), each on a white sheet with a margin wide enough to turn it
without cutting any of it off, turned by an angle drawn evenly within --max-angle degrees either way,
then degraded by one of bench_unseen_noise.py's 14 families in turn (a page laid askew on the glass,
then scanned), then cleaned as `python -m src.denoise` cleans it. Reported: the skew found against the
true one (mean and largest error, and the pages where no lines were found), the time it takes on such a
page and on an A4 page at 300 dpi, and Tesseract's character error rate against its
reading of the upright clean page for the noisy page, the cleaned page as it is, the cleaned page
turned upright (`denoise --deskew`), and the page degraded and cleaned without ever being turned. Needs
what bench_unseen_noise.py needs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_unseen_noise import degrade, edit_distance, one_model, one_model_args  # noqa: E402

from src.data.synthetic import make_pair  # noqa: E402
from src.inference.finish import skew_angle, upright  # noqa: E402
from src.inference.scale import clean_scan  # noqa: E402


def with_margin(page: np.ndarray, max_angle: float) -> np.ndarray:
    """A uint8 page on a sheet of white wide enough that turning it by up to `max_angle` degrees cuts off
    none of it, as a page laid askew on a scanner's larger glass."""
    margin = int(np.ceil(max(page.shape) / 2 * np.sin(np.deg2rad(max_angle)))) + 4
    return cv2.copyMakeBorder(page, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)


def turned(page: np.ndarray, angle: float) -> np.ndarray:
    """A uint8 page turned `angle` degrees anticlockwise about its centre on white paper, as uint8."""
    h, w = page.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = cv2.warpAffine(page.astype(np.float32), turn, (w, h), flags=cv2.INTER_CUBIC, borderValue=255.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_model_args(p)
    p.add_argument("--pages", type=int, default=48, help="turned pages (default: %(default)s)")
    p.add_argument("--max-angle", type=float, default=8.0, help="degrees either way (default: %(default)s)")
    args = p.parse_args(argv)
    read, families, model, scale, cleans = one_model(p, args)
    cleans = [with_margin(c, args.max_angle) for c in cleans]
    rng = np.random.default_rng([args.seed, 7])
    errors, missed, seconds = [], [], []
    edits = {"noisy": 0, "cleaned": 0, "cleaned, turned upright": 0, "never turned, cleaned": 0}
    chars, references = 0, {}
    started = time.time()
    for i in range(args.pages):
        k = i % len(cleans)
        angle = float(rng.uniform(-args.max_angle, args.max_angle))
        name, (family, augraphy) = families[i % len(families)]
        noisy = degrade(family, augraphy, turned(cleans[k], angle), np.random.default_rng([args.seed, 8, i]))
        cleaned = clean_scan(model, noisy, **scale, tta=True)[0]
        t0 = time.perf_counter()
        found = skew_angle(cleaned)
        seconds.append(time.perf_counter() - t0)
        if found is None:
            missed.append(name)
        else:
            errors.append(found - angle)
        if read is not None:
            if k not in references:
                references[k] = read(cleans[k] / np.float32(255))
            chars += len(references[k])
            never = degrade(family, augraphy, cleans[k], np.random.default_rng([args.seed, 8, i]))
            for column, page in (("noisy", noisy), ("cleaned", cleaned),
                                 ("cleaned, turned upright", upright(cleaned, found)),
                                 ("never turned, cleaned", clean_scan(model, never, **scale, tta=True)[0])):
                edits[column] += edit_distance(references[k], read(page))
    errors = np.abs(errors)
    print(f"{args.pages} pages turned up to {args.max_angle:g} degrees either way, degraded by the 14 "
          f"families in turn, cleaned by {args.checkpoint}")
    print(f"skew found on {args.pages - len(missed)} of {args.pages} pages: off by {errors.mean():.3f} "
          f"degrees on average, {errors.max():.3f} at most; {np.sum(errors > 0.25)} off by more than 0.25; "
          f"{np.mean(seconds) * 1e3:.0f} ms a page" + ("; no lines: " + ", ".join(missed) if missed else ""))
    a4 = make_pair(0, 1, 3508, 2480)[1] / np.float32(255)
    t0 = time.perf_counter()
    skew_angle(a4)
    print(f"A4 page at 300 dpi: skew found in {time.perf_counter() - t0:.2f} s")
    if read is not None:
        print("Tesseract's character error rate: " + ", ".join(
            f"{name} {100 * e / max(chars, 1):.1f} %" for name, e in edits.items()))
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
