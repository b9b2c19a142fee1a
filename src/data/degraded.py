"""Degraded pages for the general recipe: clean pages put through Augraphy's degradations, cached.

The competition's pages show eight backgrounds; a model trained on them alone leaves grain, speckle
and photocopier noise as it finds them. Here clean pages (the competition's training targets and text
pages rendered in TrueType fonts) are degraded by Augraphy (photocopier toner, scanner drums and
rollers, paper texture, shadows, stains, watermarks, worn ink, JPEG), and the pair (degraded, clean)
trains the model like a competition pair. Only augmentations that leave every pixel in place are
used: the clean page is the target.

Augraphy takes up to a second a page, so the pages are built once into one file per settings (its name
holds their digest) and every run reads that file. Augraphy is imported only to build a file: the
competition recipes and the Kaggle kernel (whose image has no Augraphy) never import it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import functools
import hashlib
import json
from pathlib import Path
import random
import time
from typing import Callable

import cv2
import numpy as np

from src.common.errors import DataError
from src.common.files import atomic_write
from src.data.synthetic import pseudo_word

FORMAT = 4   # in every cache key: pages built by other pipelines or another renderer are not reused
INSTALL = "pip install numba && pip install --no-deps augraphy==8.2.6"   # --no-deps: see need_augraphy
# Text pages in the fonts matplotlib ships (matplotlib/mpl-data/fonts/ttf): sans, serif and monospace,
# regular, italic and bold, so the model meets letter shapes the competition's few fonts do not show.
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Italic.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf",
         "STIXGeneralItalic.ttf", "STIXGeneralBol.ttf")
PAGE_SHAPES = ((258, 540), (420, 540))   # the competition's page sizes, so tiles and text sizes match
# Random streams, by purpose: training draws from TRAINING, benchmarks from HELD_OUT, so no held-out
# page's text or degradation is ever a training page's, whatever the seed.
TRAINING, HELD_OUT = 0, 1
SENSOR = 0.6   # the share of degraded pages that also go through `sensor_faults`


# ---------------------------------------------------------------- rendered text pages

def font_files() -> list[Path]:
    """The TrueType files of FONTS, from matplotlib's data folder (a dependency of the package)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [folder / name for name in FONTS if (folder / name).is_file()]
    if not found:
        raise DataError(f"{folder}: none of the fonts {', '.join(FONTS)}; reinstall matplotlib")
    return found


def text_line(rng: np.random.Generator, fits: Callable[[str], bool]) -> str:
    """Pseudo-words, now and then a capital, a number or punctuation, as long as `fits` allows."""
    words: list[str] = []
    while True:
        word = pseudo_word(rng)
        roll = rng.random()
        word = (word.capitalize() if roll < 0.15 else str(int(rng.integers(1, 2000))) if roll < 0.2 else word)
        word += str(rng.choice([".", ",", ";", ":"])) if rng.random() < 0.1 else ""
        if not fits(" ".join(words + [word])):
            return " ".join(words)
        words.append(word)


def render_text_page(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Lines of pseudo-words in one of FONTS, black on white, antialiased.

    Font size 15-24 px puts the letters within the competition's text sizes; line pitch 1.15-1.9 font
    sizes; most lines run past the right edge, as the competition's crops do.
    Returns: uint8 (height, width); paper 255, ink 0, as on the competition's clean pages.
    """
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_files()
    size = int(rng.integers(15, 25))
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)
    pitch = max(size + 1, round(size * rng.uniform(1.15, 1.9)))
    left = int(rng.integers(2, 40))
    right = width + int(rng.integers(0, 60)) if rng.random() < 0.7 else width - int(rng.integers(5, 40))
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    y = int(rng.integers(-size // 2, 16))
    while y < height:
        x0 = left + (int(rng.integers(15, 40)) if rng.random() < 0.1 else 0)   # a paragraph's first line
        draw.text((x0, y), text_line(rng, lambda s: draw.textlength(s, font=font) <= right - x0),
                  font=font, fill=0)
        y += pitch
    return np.asarray(page, dtype=np.uint8)


# ---------------------------------------------------------------- Augraphy

def need_augraphy():
    """The augraphy module, or a DataError saying how to install it.

    Augraphy's wheel asks for opencv-python, which would overwrite this package's
    opencv-python-headless (one cv2): it is installed without its dependencies, numba beside it.
    """
    try:
        import augraphy
    except ImportError as e:
        why = (str(e).splitlines() or ["not installed"])[0]
        raise DataError(f"degraded pages need Augraphy ({why}); install it with: {INSTALL}") from None
    return augraphy


def training_augmentations(ag, rng: np.random.Generator) -> list:
    """One page's Augraphy augmentations: sometimes worn ink, one to three paper and scanner faults, then
    each of grain, JPEG and a change of contrast now and then. None moves a pixel of the text.

    Grain and JPEG reach past Augraphy's defaults (grain up to +-60 levels, JPEG down to quality 5): a
    scan can be worse than Augraphy's defaults make it.
    Args: ag: the augraphy module; rng: this page's stream.
    """
    ink = [lambda: ag.InkBleed(p=1), lambda: ag.LowInkRandomLines(p=1), lambda: ag.InkMottling(p=1),
           lambda: ag.Letterpress(p=1)]
    paper = [lambda: ag.BadPhotoCopy(p=1), lambda: ag.DirtyDrum(p=1), lambda: ag.DirtyRollers(p=1),
             lambda: ag.NoiseTexturize(p=1), lambda: ag.BrightnessTexturize(p=1), lambda: ag.ShadowCast(p=1),
             lambda: ag.LightingGradient(p=1), lambda: ag.Stains(p=1), lambda: ag.WaterMark(p=1),
             lambda: ag.BleedThrough(p=1), lambda: ag.ColorPaper(p=1)]
    post = [lambda: ag.SubtleNoise(subtle_range=int(rng.integers(5, 61)), p=1),
            lambda: ag.Jpeg(quality_range=(5, 95), p=1),
            lambda: ag.Gamma(p=1) if rng.random() < 0.5 else ag.Brightness(p=1)]
    chosen = [ink[int(rng.integers(len(ink)))]] if rng.random() < 0.3 else []
    chosen += [paper[i] for i in rng.choice(len(paper), int(rng.integers(1, 4)), replace=False)]
    chosen += [make for make in post if rng.random() < 0.35]
    return [make() for make in chosen]


@functools.lru_cache(maxsize=1)
def numba_seeder():
    """A function seeding numba's own generators: Augraphy's compiled parts (DirtyRollers' masks) draw
    from those, which seeding `random` and NumPy from Python leaves alone."""
    import numba

    @numba.njit
    def seed_numba(seed):
        random.seed(seed)
        np.random.seed(seed)
    return seed_numba


def apply_augmentations(page: np.ndarray, augmentations: list, seed: int) -> np.ndarray:
    """page (uint8 (H, W)) through `augmentations` in turn, every random state Augraphy draws from
    (`random`, NumPy's global generator, numba's) seeded first. Returns uint8 (H, W): colour results
    (Jpeg, LightingGradient return BGR) are turned grey."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    numba_seeder()(seed % 2**32)
    out = page
    for aug in augmentations:
        out = aug(np.ascontiguousarray(out))
        out = out[0] if isinstance(out, tuple) else out
        if out.ndim == 3:
            out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    if out.shape != page.shape:
        raise DataError(f"an augmentation changed the page's shape {page.shape} to {out.shape}: "
                        f"{', '.join(type(a).__name__ for a in augmentations)}")
    return np.ascontiguousarray(out, dtype=np.uint8)


def sensor_faults(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uint8 page as a poor scanner or camera sends it, each fault now and then, in the order light
    meets them: optics' blur, a squeezed range, photon and read grain, dropped pixels, JPEG. uint8 out.

    Augraphy's grain (SubtleNoise) is uniform and mild, and it has no blur or impulse noise: a model
    trained on its pages left salt and pepper and blur no better, or worse, than they came in
    (docs/general.md). The ranges reach past what a usable scan shows, so that milder faults are easy.
    """
    x = page / 255.0
    if rng.random() < 0.35:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.25:
        low, high = rng.uniform(0, 0.5), rng.uniform(0.55, 1)
        x = low + (high - low) * x
    if rng.random() < 0.3:
        peak = rng.uniform(8, 80)
        x = rng.poisson(np.clip(x, 0, 1) * peak) / peak
    if rng.random() < 0.35:
        x = x + rng.normal(0, rng.uniform(0.02, 0.2), x.shape)
    if rng.random() < 0.25:
        hit = rng.random(x.shape) < rng.uniform(0.005, 0.1)
        x = np.where(hit, (rng.random(x.shape) < rng.uniform(0.2, 0.8)).astype(np.float64), x)
    out = as_uint8(np.clip(x, 0, 1))
    if rng.random() < 0.25:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(5, 70))])
        out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return out


def degrade_for_training(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean page (uint8 (H, W)) degraded by `training_augmentations`, then by `sensor_faults` on
    SENSOR of the pages: uint8 (H, W)."""
    ag = need_augraphy()
    page = apply_augmentations(clean, training_augmentations(ag, rng), int(rng.integers(2**31)))
    return sensor_faults(page, rng) if rng.random() < SENSOR else page


# ---------------------------------------------------------------- the cache

@dataclass(frozen=True)
class DegradedSettings:
    pages: int            # pages built: the source pages and rendered text pages, alternately
    seed: int             # rendered texts and degradations
    sources: str          # sha1 of the clean source pages, so another split builds another file
    format: int = FORMAT

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def as_uint8(page: np.ndarray) -> np.ndarray:
    """A page in [0, 1] (any float dtype) or already uint8, as uint8 (H, W): 8-bit PNG values back."""
    page = np.asarray(page)
    return page if page.dtype == np.uint8 else np.clip(np.rint(page * 255), 0, 255).astype(np.uint8)


def sources_digest(sources: list[np.ndarray]) -> str:
    digest = hashlib.sha1()
    for page in sources:
        digest.update(str(page.shape).encode())
        digest.update(np.ascontiguousarray(page).tobytes())
    return digest.hexdigest()


def clean_page(i: int, sources: list[np.ndarray], seed: int) -> np.ndarray:
    """The i-th clean page of a cache: even i the sources in turn, odd i (and every i without sources)
    a rendered page of the TRAINING stream, of a competition page's size."""
    if sources and i % 2 == 0:
        return sources[(i // 2) % len(sources)]
    rng = np.random.default_rng([seed, TRAINING, 0, i])
    return render_text_page(rng, *PAGE_SHAPES[int(rng.integers(len(PAGE_SHAPES)))])


def build_pages(settings: DegradedSettings, sources: list[np.ndarray], degrade=degrade_for_training,
                progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """settings.pages (degraded, clean) uint8 pairs; degrade(clean, rng) makes a page's degraded twin."""
    from tqdm import tqdm

    pairs = []
    for i in tqdm(range(settings.pages), desc="degraded pages", unit="page", disable=not progress or None):
        clean = clean_page(i, sources, settings.seed)
        pairs.append((degrade(clean, np.random.default_rng([settings.seed, TRAINING, 1, i])), clean))
    return pairs


def cache_path(folder: Path, settings: DegradedSettings) -> Path:
    return Path(folder) / f"degraded-{settings.pages}-{settings.key()}.npz"


def save_pairs(path: Path, pairs: list[tuple[np.ndarray, np.ndarray]], settings: DegradedSettings) -> None:
    """One .npz (written atomically: a killed build leaves no file that looks complete)."""
    arrays = {f"{kind}_{i}": page for i, pair in enumerate(pairs)
              for kind, page in zip(("noisy", "clean"), pair)}
    arrays["settings"] = np.frombuffer(json.dumps(asdict(settings)).encode(), np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:   # a file object: np.savez would add .npz to the temporary name
            np.savez_compressed(f, **arrays)
    atomic_write(path, write)


def load_pairs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    with np.load(path) as z:
        n = sum(name.startswith("noisy_") for name in z.files)
        return [(z[f"noisy_{i}"], z[f"clean_{i}"]) for i in range(n)]


def degraded_pairs(folder: Path, n_pages: int, seed: int, sources: list[np.ndarray], log=print,
                   degrade=degrade_for_training) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cache's (degraded, clean) uint8 pairs for these settings: read, or built and saved first.

    Args:
        folder: where cache files live (one per settings).
        n_pages: pages to build; half are `sources` (clean pages in [0, 1] or uint8) degraded, half
            rendered text pages degraded.
        seed: the rendered texts and degradations.
        degrade: degrade(clean uint8, rng) -> uint8 page; Augraphy's training pipeline by default.
    Raises DataError when the cache must be built and Augraphy is missing (a one-line install hint).
    """
    sources = [as_uint8(s) for s in sources]
    settings = DegradedSettings(n_pages, seed, sources_digest(sources))
    path = cache_path(folder, settings)
    if path.is_file():
        log(f"degraded pages: {n_pages} read from {path}")
        return load_pairs(path)
    if degrade is degrade_for_training:
        need_augraphy()   # before any page is rendered
    log(f"degraded pages: building {n_pages} into {path} (once for these settings)")
    started = time.perf_counter()
    pairs = build_pages(settings, sources, degrade)
    save_pairs(path, pairs, settings)
    log(f"degraded pages: built in {time.perf_counter() - started:.0f} s")
    return pairs
