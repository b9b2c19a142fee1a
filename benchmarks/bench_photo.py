"""Photos of pages: how well `denoise --crop` finds a page's outline, and what cutting it out does for OCR.

    python benchmarks/bench_photo.py [--checkpoint models/general_best.pt] [--data-dir competition]
        [--pages 28] [--seed 0] [--no-ocr]

The clean pages of bench_unseen_noise.py (the checkpoint's held-out pages, one per text, and rendered
pages of a stream training never draws), each photographed twice: as printed (the clean page) and dirty
(degraded by one of bench_unseen_noise.py's 14 families in turn). A photo is 1600 x 1200 px: the page in
perspective (each corner moved by up to 6 % of the page's size), covering 45-75 % of the frame's
shorter side, on a desk of blurred grain whose mean brightness is 0.15-0.5. Reported for each kind: the
photos whose page's outline was found, how far its corners lie from the true ones (the largest of the
four, px), the time to find it, and Tesseract's character error rate against its reading of the clean
page for the photo cleaned whole as `denoise` cleans it and for the page cut out, then cleaned
(`denoise --crop`). Then the time to find and cut out the page in a phone's 12-megapixel photo of an
A4 page. Needs what bench_unseen_noise.py needs.
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

from src.data.outline import cut_out, page_outline  # noqa: E402
from src.data.synthetic import make_pair  # noqa: E402
from src.inference.scale import clean_scan  # noqa: E402

PHOTO = (1200, 1600)


def photo_of(page: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = PHOTO,
             cover: tuple[float, float] = (0.45, 0.75), tilt: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """(a photo of `page` ((H, W) float in [0, 1]), float32 (H', W') in [0, 1]; the page's corners in it,
    float32 (4, 2) x, y from the top left clockwise): the page whole in the frame, in perspective, on a
    desk of blurred grain."""
    h, w = size
    ph, pw = page.shape
    s = rng.uniform(*cover) * min(h / ph, w / pw)
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.05, 0.05, 2) * [w, h]
    square = np.float32([[-pw, -ph], [pw, -ph], [pw, ph], [-pw, ph]]) * s / 2 + centre
    corners = (square + rng.uniform(-tilt, tilt, (4, 2)) * [pw * s, ph * s]).astype(np.float32)
    flat = np.float32([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]])
    warp = cv2.getPerspectiveTransform(flat, corners)
    grain = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 6)
    desk = rng.uniform(0.15, 0.5) + 0.075 * (grain - grain.mean()) / (grain.std() + 1e-6)
    placed = cv2.warpPerspective(np.asarray(page, np.float32), warp, (w, h), flags=cv2.INTER_CUBIC)
    inside = cv2.warpPerspective(np.ones((ph, pw), np.float32), warp, (w, h), flags=cv2.INTER_LINEAR)
    return np.clip(inside * placed + (1 - inside) * desk, 0, 1).astype(np.float32), corners


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_model_args(p)
    p.add_argument("--pages", type=int, default=28, help="pages, each photographed clean and dirty "
                   "(default: %(default)s)")
    args = p.parse_args(argv)
    read, families, model, scale, cleans = one_model(p, args)
    rng = np.random.default_rng([args.seed, 9])
    started, references = time.time(), {}
    print(f"{args.pages} pages photographed clean and dirty ({PHOTO[1]} x {PHOTO[0]} px), cleaned by "
          f"{args.checkpoint}")
    for kind in ("clean", "dirty"):
        corner_errors, missed, seconds, edits, chars = [], [], [], {"whole": 0, "cut out": 0}, 0
        for i in range(args.pages):
            k = i % len(cleans)
            name, (family, augraphy) = families[i % len(families)]
            page = (cleans[k] / np.float32(255) if kind == "clean" else
                    degrade(family, augraphy, cleans[k], np.random.default_rng([args.seed, 10, i])))
            photo, corners = photo_of(page, rng)
            t0 = time.perf_counter()
            found = page_outline(photo)
            seconds.append(time.perf_counter() - t0)
            if found is None:
                missed.append(name if kind == "dirty" else str(k))
            else:
                corner_errors.append(float(np.abs(found - corners).max()))
            if read is not None:
                if k not in references:
                    references[k] = read(cleans[k] / np.float32(255))
                chars += len(references[k])
                cut = photo if found is None else cut_out(photo, found)
                for column, shown in (("whole", photo), ("cut out", cut)):
                    cleaned = clean_scan(model, shown, **scale, tta=True)[0]
                    edits[column] += edit_distance(references[k], read(cleaned))
        errors = np.array(corner_errors or [np.nan])
        print(f"{kind}: outline found on {args.pages - len(missed)} of {args.pages} photos, its corners off "
              f"by {np.median(errors):.1f} px (median of each photo's largest), {np.sum(errors > 10)} by "
              f"more than 10 px, {errors.max():.1f} at most; {np.mean(seconds) * 1e3:.0f} ms a photo"
              + (f" (none on: {', '.join(missed)})" if missed else "")
              + ("; Tesseract's character error rate, cleaned " + ", ".join(
                  f"{column} {100 * e / max(chars, 1):.1f} %" for column, e in edits.items())
                 if read is not None else ""))
    a4 = make_pair(0, 1, 3508, 2480)[1] / np.float32(255)
    photo, _ = photo_of(a4, rng, size=(4032, 3024), cover=(0.8, 0.8))
    t0 = time.perf_counter()
    found = page_outline(photo)
    cut = photo if found is None else cut_out(photo, found)
    print(f"a 12-megapixel photo (3024 x 4032) of an A4 page at 300 dpi: outline found and the page cut out "
          f"({cut.shape[1]} x {cut.shape[0]} px) in {time.perf_counter() - t0:.2f} s")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
