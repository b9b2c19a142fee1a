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
