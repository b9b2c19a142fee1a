"""Patch sampling and augmentation (albumentations).

Geometric transforms (crop, flips, 90-degree turns) move noisy and clean alike through
`additional_targets`; photometric jitter touches the noisy input only, so the target stays the
true clean page. Nothing else resamples pixels: interpolation would blur the thin strokes the metric
scores. The exception is `zoom`, for models that clean scans: a share of the patches enlarged, noisy
and clean alike, as a scan at a higher resolution shows the text. Every patch is drawn from a generator
seeded by (seed, epoch, rank, index), so an epoch is the same whichever worker, process or resumed run
draws it.
"""
from __future__ import annotations

from collections.abc import Sequence
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise checks for updates online

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402


def create_train_transforms(patch_size: int, flips: bool = False) -> A.Compose:
    """Geometric: a random patch (reflect-padded if the page is smaller), then flips and 90-degree turns.

    RandomCrop pads only pages smaller than the patch; a PadIfNeeded before it would copy every whole
    page (copyMakeBorder with zero borders), several times slower for the same patches (docs/speed.md).
    The 8 flips/turns come from one SquareSymmetry: separate HorizontalFlip and VerticalFlip in one
    seeded Compose draw the same coin (albumentations 2.0.8), so together they only ever turn the
    patch by 180 degrees and never mirror it.
    """
    turns = [A.SquareSymmetry(p=1.0)] if flips else []
    return A.Compose([
        A.RandomCrop(patch_size, patch_size, pad_if_needed=True, border_mode=cv2.BORDER_REFLECT_101),
        *turns,
    ], additional_targets={"clean": "image"})


def create_input_transforms(p: float) -> A.Compose:
    """Photometric jitter for the noisy input only: scanners differ in exposure and grain."""
    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=p),
        A.GaussNoise(std_range=(0.005, 0.03), p=p / 2),
    ])


def enlarged_crop(noisy: np.ndarray, clean: np.ndarray, size: int, factor: float, rng: np.random.Generator):
    """A random region of a pair enlarged `factor` times (cubic, as a scan at a higher resolution shows
    the page), at least `size` px on each side: the text at a size the competition's pages never show."""
    side = min(int(np.ceil(size / factor)) + 2, *noisy.shape)
    top, left = (int(rng.integers(n - side + 1)) for n in noisy.shape)
    out = max(size, round(side * factor))
    crop = (slice(top, top + side), slice(left, left + side))
    return tuple(np.clip(cv2.resize(np.ascontiguousarray(a[crop]), (out, out), interpolation=cv2.INTER_CUBIC),
                         0, 255 if a.dtype == np.uint8 else 1) for a in (noisy, clean))


def area_weights(pages: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each page's chance of giving a patch: its share of the pixels."""
    area = np.array([n.size for n, _ in pages], dtype=np.float64)
    return area / area.sum()


class PatchDataset(Dataset):
    """`length` random (noisy, clean) patches drawn from whole pages, pages weighted by area.

    Pages are float in [0, 1] or uint8 (0-255: the degraded pages, a quarter of the memory). `extra`
    pages (the degraded pages of src/data/degraded.py) give `extra_share` of the patches, `pages` the
    rest; a sequence of shares gives each epoch's (later epochs take its last). A `zoom` share of the
    patches, from either set, are `enlarged_crop`s, by 1 to `zoom_max` times. Items are (1, P, P)
    float32 tensors in [0, 1]. Call `set_epoch` before each epoch.
    """

    def __init__(self, pages: list[tuple[np.ndarray, np.ndarray]], patch_size: int, length: int,
                 photometric: float = 0.0, seed: int = 0, rank: int = 0, flips: bool = False,
                 extra: list[tuple[np.ndarray, np.ndarray]] = (), extra_share: float | Sequence[float] = 0.0,
                 zoom: float = 0.0, zoom_max: float = 3.0):
        if not pages:
            raise ValueError("no training pages")
        shares = list(extra_share) if isinstance(extra_share, Sequence) else [extra_share]
        extra = list(extra) if max(shares) > 0 else []
        self.pages, self.length, self.seed, self.rank = list(pages) + extra, length, seed, rank
        own = area_weights(pages)
        # one draw over both sets, so a run without extra pages draws what it always drew
        self.epoch_p = [np.concatenate([(1 - s) * own, s * area_weights(extra)]) if extra else own
                        for s in shares]
        self.page_p = self.epoch_p[0]
        self.geometric = create_train_transforms(patch_size, flips)
        self.photometric = create_input_transforms(photometric) if photometric > 0 else None
        self.epoch, self.zoom, self.zoom_max, self.patch_size = 0, zoom, zoom_max, patch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.page_p = self.epoch_p[min(epoch, len(self.epoch_p) - 1)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, i])
        noisy, clean = self.pages[rng.choice(len(self.pages), p=self.page_p)]
        if self.zoom > 0 and rng.random() < self.zoom:
            factor = np.exp(rng.uniform(0, np.log(self.zoom_max)))   # log-uniform: each octave alike
            noisy, clean = enlarged_crop(noisy, clean, self.patch_size, factor, rng)
        self.geometric.set_random_seed(int(rng.integers(2**31)))
        out = self.geometric(image=noisy, clean=clean)
        x, y = out["image"], out["clean"]
        if x.dtype == np.uint8:
            x, y = x.astype(np.float32) / 255, y.astype(np.float32) / 255
        if self.photometric is not None:
            self.photometric.set_random_seed(int(rng.integers(2**31)))
            x = np.clip(self.photometric(image=x)["image"], 0.0, 1.0)
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None],
                torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])
