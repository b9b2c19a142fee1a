"""Shared fixtures: tiny synthetic data made on the fly, and the real data when ../shared has it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
REAL_ZIP = SHARED / "competition" / "denoising-dirty-documents.zip"
MNIST_DIR = SHARED / "mnist"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small competition-shaped dataset (made once per test session); treat it as read-only."""
    from src.synthetic import make_synthetic_competition

    return make_synthetic_competition(tmp_path_factory.mktemp("synthetic"), n_train=6, n_test=2, seed=1)


@pytest.fixture
def real_zip() -> Path:
    if not REAL_ZIP.is_file():
        pytest.skip("../shared/competition/denoising-dirty-documents.zip is absent")
    return REAL_ZIP


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def blob_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28): digit d is a bright bar whose column depends on d, at a random height."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), np.uint8)
    for img, d in zip(images, labels):
        top = rng.integers(2, 8)
        img[top:top + 16, 2 + 2 * d:6 + 2 * d] = rng.integers(160, 256)
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """The four MNIST IDX files (.gz) of 200 train and 100 test `blob_digits`."""
    from src.mnist import IDX_FILES, write_idx

    folder = tmp_path_factory.mktemp("mnist")
    (tr_x, tr_y), (te_x, te_y) = blob_digits(200, 1), blob_digits(100, 2)
    for key, arr in dict(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y).items():
        write_idx(folder / f"{IDX_FILES[key]}.gz", arr)
    return folder
