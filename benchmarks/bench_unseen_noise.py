"""Noise the competition never showed: RMSE and OCR error of two denoisers on pages degraded in other ways.

    python benchmarks/bench_unseen_noise.py [--competition models/quick_best.pt]
        [--general models/general_best.pt] [--data-dir DIR] [--per-family 8] [--rendered 9] [--no-ocr]
        [--as-denoise [--keep-solid] [--bilevel]]

Held-out clean pages: the clean pages of the competition checkpoint's held-out split (one per text),
and `--rendered` text pages of src/data/degraded.py's HELD_OUT stream, a stream training never draws.
Each family degrades `--per-family` of them, with seeds of that stream too:
  - Augraphy pipelines, one per kind of fault, with seeds training never uses (so other pages and
    other parameters; training's random pipeline may draw some of the same combinations), and one
    ("ink and lines") of Augraphy augmentations that training never uses at all;
  - degradations that are not Augraphy's: Gaussian and Poisson grain, salt and pepper, blur, low
    contrast, JPEG, uneven light.
Each page is cleaned alone with flip TTA (`predict_page`, as validation does; with `--as-denoise` as
`python -m src.denoise` cleans it, its text measured and the page brought to the model's text size
first: `clean_scan`). For each family and
pooled: RMSE against the clean page, and Tesseract's character error rate (edit distance over the
length of what Tesseract reads on the clean page, whitespace runs as one space), for the noisy page
and both models, and where the general model's error is (text the fault hid, text and paper it
touched, the rest). Then the competition's held-out pages themselves, by both models.

Needs Tesseract (apt-get install tesseract-ocr; pip install pytesseract) unless --no-ocr, and Augraphy
(src/data/degraded.py INSTALL). Data: as bench_denoiser.py.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]   # the package, and bench_denoiser beside this file
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from bench_denoiser import data_dir_of  # noqa: E402

from src.common.config import config_from_dict  # noqa: E402
from src.common.errors import CheckpointError, DataError  # noqa: E402
from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.data.degraded import HELD_OUT, PAGE_SHAPES, apply_augmentations, as_uint8  # noqa: E402
from src.data.degraded import need_augraphy, render_text_page  # noqa: E402
from src.data.splits import text_groups  # noqa: E402
from src.inference.finish import finish  # noqa: E402
from src.inference.metrics import pooled_rmse  # noqa: E402
from src.inference.scale import clean_scan, learnt_zoom, target_text_size  # noqa: E402
from src.inference.tiles import predict_page  # noqa: E402
from src.models.checkpoints import load_model  # noqa: E402
from src.training.config import DenoiserConfig  # noqa: E402
from src.training.denoiser import split_train_val  # noqa: E402

OCR_INSTALL = "apt-get install tesseract-ocr && pip install pytesseract (or pass --no-ocr)"


# ---------------------------------------------------------------- the families

def augraphy_families(ag) -> dict:
    """name -> rng -> Augraphy augmentations, one pipeline per kind of fault."""
    return {
        "photocopy": lambda rng: [ag.BadPhotoCopy(p=1), ag.SubtleNoise(subtle_range=25, p=1)],
        "scanner drum": lambda rng: [ag.DirtyDrum(p=1), ag.DirtyRollers(p=1)],
        "texture + JPEG": lambda rng: [ag.NoiseTexturize(p=1), ag.BrightnessTexturize(p=1),
                                       ag.Jpeg(quality_range=(15, 40), p=1)],
        "shadow": lambda rng: [ag.ShadowCast(p=1), ag.LightingGradient(p=1)],
        "stains": lambda rng: [ag.Stains(p=1), ag.Stains(p=1), ag.BleedThrough(p=1)],
        "watermark": lambda rng: [ag.WaterMark(p=1), ag.WaterMark(p=1)],
        "ink and lines": lambda rng: [ag.LowInkPeriodicLines(p=1), ag.NoisyLines(p=1),
                                      ag.ReflectedLight(p=1)],
    }


def gaussian_grain(page, rng):
    return page + rng.normal(0, rng.uniform(0.06, 0.14), page.shape)


def poisson_grain(page, rng):
    """Photon noise: a page of `peak` photons at white, as a dim sensor sees it."""
    peak = rng.uniform(15, 40)
    return rng.poisson(page * peak) / peak


def salt_and_pepper(page, rng):
    hit = rng.random(page.shape) < rng.uniform(0.02, 0.06)
    return np.where(hit, (rng.random(page.shape) < 0.5).astype(np.float64), page)


def blur(page, rng):
    return cv2.GaussianBlur(page, (0, 0), rng.uniform(0.8, 1.5))


def low_contrast(page, rng):
    low, high = rng.uniform(0.25, 0.45), rng.uniform(0.6, 0.8)
    return low + (high - low) * page


def jpeg(page, rng):
    ok, data = cv2.imencode(".jpg", as_uint8(page), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(5, 16))])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) / 255.0


def uneven_light(page, rng):
    """A ramp down to 0.35-0.6 of the light in a random direction, and a brighter spot."""
    h, w = page.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(a) + yy * np.sin(a)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    light = 1 - (1 - rng.uniform(0.35, 0.6)) * ramp
    cy, cx = rng.uniform(0, h / max(h, w)), rng.uniform(0, w / max(h, w))
    light += 0.25 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.02, 0.08))
    return page * light


PLAIN_FAMILIES = {"Gaussian grain": gaussian_grain, "Poisson grain": poisson_grain,
                  "salt and pepper": salt_and_pepper, "blur": blur, "low contrast": low_contrast,
                  "JPEG": jpeg, "uneven light": uneven_light}


def all_families(ag) -> dict:
    """name -> (family, whether it is Augraphy's): the Augraphy pipelines, then the plain faults."""
    return {**{f"{k} (Augraphy)": (f, True) for k, f in augraphy_families(ag).items()},
            **{k: (f, False) for k, f in PLAIN_FAMILIES.items()}}


def degrade(family, augraphy: bool, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean uint8 page degraded by a family, as an 8-bit scan: float32 (H, W) in [0, 1]."""
    if augraphy:
        return apply_augmentations(clean, family(rng), int(rng.integers(2**31))) / np.float32(255)
    return as_uint8(np.clip(family(clean / 255.0, rng), 0, 1)) / np.float32(255)


# ---------------------------------------------------------------- OCR

def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row of the table at a time in NumPy: insertions along a row are a
    running minimum of (cost - column) plus the column."""
    if not a or not b:
        return max(len(a), len(b))
    row = np.arange(len(b) + 1)
    cols = np.arange(len(b) + 1)
    codes = np.array([ord(c) for c in b])
    for i, ch in enumerate(a, 1):
        step = np.empty_like(row)
        step[0] = i
        step[1:] = np.minimum(row[1:] + 1, row[:-1] + (codes != ord(ch)))
        row = np.minimum.accumulate(step - cols) + cols
    return int(row[-1])


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def augraphy_or_fail():
    """The augraphy module, or SystemExit 2 with one line saying how to install it."""
    try:
        return need_augraphy()
    except DataError as e:
        fail(str(e), 2)


def ocr_reader():
    """page (float (H, W) in [0, 1]) -> its text, whitespace runs as one space; SystemExit 2 naming what
    to install when Tesseract or pytesseract is missing."""
    try:
        import pytesseract
        pytesseract.get_tesseract_version()
    except ImportError:
        fail(f"OCR needs pytesseract and Tesseract: {OCR_INSTALL}", 2)
    except pytesseract.TesseractNotFoundError:
        fail(f"OCR needs the tesseract program: {OCR_INSTALL}", 2)

    def read(page: np.ndarray) -> str:   # --psm 6: one block of text, as the pages are
        return " ".join(pytesseract.image_to_string(as_uint8(page), config="--psm 6").split())

    # Tesseract's own OpenMP threads and torch's, both spinning on 2 cores, take 3x as long; torch read
    # the variable when it loaded, so this reaches Tesseract alone
    os.environ["OMP_THREAD_LIMIT"] = "1"
    return read


# ---------------------------------------------------------------- scoring

PARTS = ("text hidden", "text touched", "other text", "paper touched", "other paper")


def error_parts(pred: np.ndarray, clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """The squared error of `pred` summed over PARTS. Text is where the clean page is darker than 0.5; a
    fault touched a pixel where the noisy page is more than 0.1 (25 levels) off the clean one, and hid
    text it touched where the noisy page is flat around it (5x5 pixels within 0.04: no trace of the
    stroke, as under an opaque watermark): no denoiser can restore hidden text, only guess it."""
    text, touched = clean < 0.5, np.abs(noisy - clean) > 0.1
    square = np.ones((5, 5), np.uint8)
    flat = cv2.dilate(noisy, square) - cv2.erode(noisy, square) <= 0.04
    hidden = text & touched & flat
    error = (np.asarray(pred, np.float64) - clean) ** 2
    return np.array([error[m].sum() for m in (hidden, text & touched & ~hidden, text & ~touched,
                                              ~text & touched, ~text & ~touched)])


class Tally:
    """Squared error, pixels, edit distance and reference characters of one column of the table, and
    that error by PARTS."""

    def __init__(self):
        self.pairs, self.edits, self.chars, self.parts = [], 0, 0, np.zeros(len(PARTS))

    def add(self, pred, clean, text=None, reference=None, noisy=None):
        self.pairs.append((pred, clean))
        if noisy is not None:
            self.parts += error_parts(pred, clean, noisy)
        if text is not None:
            self.edits += edit_distance(reference, text)
            self.chars += len(reference)

    def rmse(self) -> float:
        return pooled_rmse(self.pairs)

    def cer(self) -> float:
        return self.edits / max(self.chars, 1)


def held_out_cleans(cfg: DenoiserConfig, pairs, rendered: int, seed: int) -> list[np.ndarray]:
    """uint8 clean pages: one per text of the checkpoint's held-out split, then `rendered` pages."""
    texts = text_groups([y for _, y in pairs])
    _, val = split_train_val(cfg, texts)
    firsts = {texts[i]: i for i in reversed(val)}   # each text's first held-out page
    cleans = [as_uint8(pairs[i][1]) for i in sorted(firsts.values())]
    for i in range(rendered):
        rng = np.random.default_rng([seed, HELD_OUT, 0, i])
        cleans.append(render_text_page(rng, *PAGE_SHAPES[int(rng.integers(len(PAGE_SHAPES)))]))
    return cleans


def score_families(cleaners: dict, cleans: list[np.ndarray], per_family: int, seed: int, read) -> dict:
    """{family: {column: Tally}}, columns "noisy" and the cleaners' names (name -> page -> cleaned)."""
    families = all_families(need_augraphy())
    references: dict[int, str] = {}
    table = {}
    for f, (name, (family, augraphy)) in enumerate(families.items()):
        started = time.time()
        tallies = {column: Tally() for column in ["noisy", *cleaners]}
        for j in range(per_family):
            k = (f * per_family + j) % len(cleans)
            clean = cleans[k] / np.float32(255)
            noisy = degrade(family, augraphy, cleans[k], np.random.default_rng([seed, HELD_OUT, 1, f, j]))
            if read is not None and k not in references:
                references[k] = read(clean)
            outputs = {"noisy": noisy, **{m: cleaner(noisy) for m, cleaner in cleaners.items()}}
            for column, page in outputs.items():
                tallies[column].add(page, clean, *((read(page), references[k]) if read else ()), noisy=noisy)
        table[name] = tallies
        print(f"  {name}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return table


def print_table(table: dict, columns: list[str], ocr: bool) -> None:
    head = f"{'family':28s} {'pages':>5s}  RMSE " + " ".join(f"{c:>11s}" for c in columns)
    print(head + ("  |  CER " + " ".join(f"{c:>11s}" for c in columns) if ocr else ""))
    pooled = {c: Tally() for c in columns}
    for name, tallies in table.items():
        for c in columns:
            pooled[c].pairs += tallies[c].pairs
            pooled[c].edits += tallies[c].edits
            pooled[c].chars += tallies[c].chars
            pooled[c].parts += tallies[c].parts
    for name, tallies in [*table.items(), ("pooled", pooled)]:
        line = f"{name:28s} {len(tallies[columns[0]].pairs):5d}       " + " ".join(
            f"{tallies[c].rmse():11.4f}" for c in columns)
        cers = " ".join(f"{100 * tallies[c].cer():10.1f}%" for c in columns)
        print(line + ("        " + cers if ocr else ""))
    print("\nwhere the general model's squared error is, share per family: " + ", ".join(PARTS))
    for name, tallies in [*table.items(), ("pooled", pooled)]:
        parts = tallies["general"].parts
        print(f"{name:28s} " + " ".join(f"{share:6.2f}" for share in parts / max(parts.sum(), 1e-12)))
    rmse = {c: pooled[c].rmse() for c in columns}
    print("pooled RMSE over the noisy input's: "
          + ", ".join(f"{c} {rmse[c] / rmse['noisy']:.2f}" for c in columns[1:]) + " (target: general 0.25)")
    worse = [name for name, t in table.items() if t["general"].rmse() >= t["noisy"].rmse()]
    print(f"families the general model leaves no better than their noisy input: {', '.join(worse) or 'none'}")
    if ocr:
        cer = {c: pooled[c].cer() for c in columns}
        print(f"pooled CER: general {100 * cer['general']:.1f} % over competition "
              f"{100 * cer['competition']:.1f} % = {cer['general'] / max(cer['competition'], 1e-9):.2f} "
              f"(target: at most 0.5)")


def score_competition_pages(models: dict, cfg: DenoiserConfig, pairs) -> None:
    """The competition's held-out pages, each page alone with flip TTA, as validation scores them."""
    _, val = split_train_val(cfg, text_groups([y for _, y in pairs]))
    scores = {m: pooled_rmse((predict_page(model, pairs[i][0], tta=True), pairs[i][1]) for i in val)
              for m, model in models.items()}
    print(f"competition held-out pages ({len(val)}, each alone, flip TTA): "
          + ", ".join(f"{m} {s:.5f}" for m, s in scores.items())
          + f"; general {100 * (scores['general'] / scores['competition'] - 1):+.1f} % (target: within +3 %)")


def one_model_args(p: argparse.ArgumentParser) -> None:
    """The flags of a benchmark of one model on these pages (bench_deskew.py, bench_photo.py)."""
    p.add_argument("--checkpoint", type=Path, default=Path("models/general_best.pt"),
                   help="the denoiser (default: %(default)s; python -m src.train_denoiser --preset general)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ocr", action="store_true", help="no Tesseract needed, nor its figures")


def one_model(p: argparse.ArgumentParser, args) -> tuple:
    """What a benchmark of one model needs, or its one-line error: (Tesseract's reader or None, the families
    as (name, (family, whether Augraphy's)), the model, `clean_scan`'s target and zoom for it, the clean
    pages of its held-out split and 9 rendered ones)."""
    data_dir = data_dir_of(p, args)
    read = None if args.no_ocr else ocr_reader()
    families = list(all_families(augraphy_or_fail()).items())
    if not args.checkpoint.exists():
        p.error(f"--checkpoint {args.checkpoint}: no such checkpoint")
    try:
        model, ckpt = load_model(args.checkpoint, "denoiser")
        pairs = load_pairs(prepare_data(data_dir).train_pairs)
    except (DataError, CheckpointError) as e:
        fail(str(e), 1)
    cfg = config_from_dict(DenoiserConfig, ckpt["config"])
    return read, families, model, denoise_scale(ckpt), held_out_cleans(cfg, pairs, 9, args.seed)


def denoise_scale(ckpt: dict) -> dict:
    """`clean_scan`'s target and zoom for a checkpoint's model, as `denoise` takes them (`load_denoisers`)."""
    return dict(target=target_text_size([ckpt])[0], zoom=learnt_zoom([ckpt]))


# how the default checkpoints are made: the competition one is `quick` under a name of its own
MAKE_MODELS = {"competition": "python -m src.train_denoiser --preset quick --name quick makes it",
               "general": "python -m src.train_denoiser --preset general makes it"}


def load_models(args) -> tuple[dict, dict, DenoiserConfig]:
    """{"competition": model, "general": model}, how each cleans a degraded page (`predict_page`, or with
    --as-denoise `clean_scan`), and the competition checkpoint's config (its split)."""
    models, cleaners, configs = {}, {}, {}
    for name, path in (("competition", args.competition), ("general", args.general)):
        models[name], ckpt = load_model(path, "denoiser")
        configs[name] = config_from_dict(DenoiserConfig, ckpt["config"])
        if args.as_denoise:
            scale = dict(denoise_scale(ckpt), keep_solid=args.keep_solid)
            # as `denoise` writes the page: black and white with --bilevel (as 0. and 1. here)
            cleaners[name] = lambda page, m=models[name], k=scale: np.asarray(
                finish(clean_scan(m, page, **k, tta=True)[0], bilevel=args.bilevel)[0], np.float32)
        else:
            cleaners[name] = lambda page, m=models[name]: predict_page(m, page, tta=True)
    same = [(c.val_fraction, c.folds, c.fold, c.split_seed, c.split_by) for c in configs.values()]
    if same[0] != same[1]:
        raise DataError(f"{args.competition} and {args.general} hold out different pages: train both with "
                        f"the same --val-fraction, --folds, --fold, --split-seed and --split-by")
    return models, cleaners, configs["competition"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--competition", type=Path, default=Path("models/quick_best.pt"),
                   help=f"the competition model ({MAKE_MODELS['competition']}; default: %(default)s)")
    p.add_argument("--general", type=Path, default=Path("models/general_best.pt"),
                   help=f"the general model ({MAKE_MODELS['general']}; default: %(default)s)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--per-family", type=int, default=8,
                   help="degraded pages per family (default: %(default)s)")
    p.add_argument("--rendered", type=int, default=9,
                   help="rendered clean pages beside the competition's (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="rendered texts and degradations (HELD_OUT stream)")
    p.add_argument("--no-ocr", action="store_true", help="RMSE only: no Tesseract needed")
    p.add_argument("--as-denoise", action="store_true",
                   help="clean the degraded pages as `python -m src.denoise` does (text size, then scale)")
    p.add_argument("--keep-solid", action="store_true", help="with --as-denoise: as `denoise --keep-solid`")
    p.add_argument("--bilevel", action="store_true", help="with --as-denoise: as `denoise --bilevel` (black "
                   "and white)")
    args = p.parse_args(argv)
    if args.per_family < 1 or args.rendered < 0:
        p.error("--per-family must be at least 1 and --rendered at least 0")
    data_dir = data_dir_of(p, args)
    read = None if args.no_ocr else ocr_reader()
    augraphy_or_fail()
    for name in ("competition", "general"):
        if not getattr(args, name).exists():
            p.error(f"--{name} {getattr(args, name)}: no such checkpoint; {MAKE_MODELS[name]}")
    try:
        models, cleaners, cfg = load_models(args)
        pairs = load_pairs(prepare_data(data_dir).train_pairs)
    except (DataError, CheckpointError) as e:
        fail(str(e), 1)
    cleans = held_out_cleans(cfg, pairs, args.rendered, args.seed)
    started = time.time()
    table = score_families(cleaners, cleans, args.per_family, args.seed, read)
    print_table(table, ["noisy", *models], read is not None)
    score_competition_pages(models, cfg, pairs)
    print(f"({len(cleans)} clean pages, {len(table) * args.per_family} degraded pages, "
          f"{time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
