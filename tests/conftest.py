"""Shared fixtures: tiny synthetic data made on the fly, and the real data when ../shared has it."""
from __future__ import annotations

import os
from pathlib import Path
import socket
import zipfile

import numpy as np
import pytest
import requests

from src.kaggle import api as kaggle_api

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
REAL_ZIP = SHARED / "competition" / "denoising-dirty-documents.zip"
KEY = "0123456789abcdef0123456789abcdef"   # a fake Kaggle API key: must never reach the output


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small competition-shaped dataset (made once per test run); treat it as read-only.

    Seed 7 deals its 6 training pages into 3 texts of 2 pages (2.png with 4.png, 3 with 8, 5 with 6;
    all 420 px tall but 3 and 8) and its 2 test pages, 420 px tall, into one text.
    """
    from src.data.synthetic import make_synthetic_competition

    return make_synthetic_competition(tmp_path_factory.mktemp("synthetic"), n_train=6, n_test=2, seed=7)


def repeated_texts(pages: Path, dest: Path, noisy_is_clean: bool = False) -> Path:
    """dest/: a copy of a competition-shaped folder whose pages of one text are one page repeated, so a
    model predicts them alike (noisy_is_clean: every noisy page is its clean page; else each is the
    noisy page of its text's first page)."""
    import shutil

    from src.data.competition import CLEAN, TRAIN
    from src.data.pages import load_page
    from src.data.splits import text_groups

    shutil.copytree(pages, dest)
    names = sorted(p.name for p in (dest / TRAIN).glob("*.png"))
    first = {}
    for name, group in zip(names, text_groups([load_page(dest / CLEAN / n) for n in names])):
        source = dest / (CLEAN if noisy_is_clean else TRAIN) / first.setdefault(group, name)
        if source.name != name or noisy_is_clean:
            shutil.copy(source, dest / TRAIN / name)
    return dest


def identity_checkpoint(path: Path, config: dict | None = None) -> Path:
    """A denoiser checkpoint of a U-Net with a zeroed residual head: the identity, it returns its input."""
    import torch

    from src.models.checkpoints import make_checkpoint, save_checkpoint
    from src.models.registry import build_model

    model = build_model("unet", width=4, depth=1)
    for p in model.head.parameters():
        torch.nn.init.zeros_(p)
    save_checkpoint(path, make_checkpoint(model, kind="denoiser", model_name="unet",
                                          model_config=dict(width=4, depth=1), config=config or {}))
    return path


def zip_competition(pages: Path, dest: Path) -> Path:
    """dest/ holding the inner zips of a competition-shaped folder, as Kaggle's zip holds them."""
    from src.data.competition import CLEAN, SAMPLE, TEST, TRAIN

    dest.mkdir(parents=True)
    for name in (TRAIN, CLEAN, TEST):
        with zipfile.ZipFile(dest / f"{name}.zip", "w") as zf:
            for p in sorted((pages / name).glob("*.png")):
                zf.write(p, f"{name}/{p.name}")
    with zipfile.ZipFile(dest / f"{SAMPLE}.zip", "w") as zf:
        zf.write(pages / SAMPLE, SAMPLE)
    return dest


def unreadable_zip(path: Path, kind: str, member: str = "train/1.png", data: bytes = b"x" * 100) -> Path:
    """A zip of one member that Python's zipfile lists but cannot read: its method set to Deflate64 (9),
    as Windows writes large files, or flagged encrypted."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    if kind == "deflate64":
        raw[8:10] = raw[central + 10:central + 12] = (9).to_bytes(2, "little")
    else:
        raw[6] |= 1
        raw[central + 8] |= 1
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture
def real_zip() -> Path:
    """../shared's competition zip; the test is skipped, saying why, when it is absent or no zip (a
    placeholder of 0 bytes, say): the product's own errors for such files are tested
    on small fakes."""
    if not REAL_ZIP.is_file():
        pytest.skip(f"{REAL_ZIP} is absent")
    if not zipfile.is_zipfile(REAL_ZIP):
        pytest.skip(f"{REAL_ZIP} is not a readable zip ({REAL_ZIP.stat().st_size:,} bytes)")
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
    from src.mnist.digits import IDX_FILES, write_idx

    folder = tmp_path_factory.mktemp("mnist")
    (tr_x, tr_y), (te_x, te_y) = blob_digits(200, 1), blob_digits(100, 2)
    for key, arr in dict(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y).items():
        write_idx(folder / f"{IDX_FILES[key]}.gz", arr)
    return folder


# ---------------------------------------------------------------- Kaggle: environment and a fake API

def http_error(status: int, body: bytes = b"") -> requests.exceptions.HTTPError:
    response = requests.Response()
    response.status_code, response._content = status, body
    return requests.exceptions.HTTPError(f"{status} Client Error for url: https://api.kaggle.com/v1/x",
                                         response=response)


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    """An empty HOME and config dir, no KAGGLE_* variables, no proxy: a machine without credentials."""
    home = tmp_path / "home"
    home.mkdir()
    for var in list(os.environ):
        if var.startswith("KAGGLE_") or var in kaggle_api.PROXY_VARS or var == "XDG_CONFIG_HOME":
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home))
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach Kaggle fails the test."""
    def refuse(*a, **k):
        raise AssertionError("the network was touched")
    monkeypatch.setattr(kaggle_api, "make_api", refuse)
    monkeypatch.setattr(kaggle_api, "check_reachable", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class FakeApi:
    """Stands in for KaggleApi: `fetch(competition, folder)` plays the download, `upload(path, message,
    competition)` a submission (it returns the response, whose .message is Kaggle's answer)."""

    COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE = "Could not submit to competition"   # as kaggle 2.x has it

    def __init__(self, fetch=None, on_authenticate=None, upload=None):
        self.fetch, self.on_authenticate, self.upload, self.calls = fetch, on_authenticate, upload, []

    def authenticate(self):
        if self.on_authenticate:
            self.on_authenticate()

    def competition_download_files(self, competition, path=None, force=False, quiet=True, unzip=False):
        self.calls.append((competition, path))
        self.fetch(competition, Path(path))

    def competition_submit(self, file_name, message, competition, quiet=False, sandbox=False):
        self.calls.append((competition, file_name, message))
        return self.upload(Path(file_name), message, competition)


@pytest.fixture
def fake_api(monkeypatch, home):
    """Install a FakeApi built from the given fetch (or upload); credentials: a fake KAGGLE_USERNAME/KEY."""
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setattr(kaggle_api, "check_reachable", lambda *a, **k: None)

    def install(fetch=None, on_authenticate=None, upload=None) -> FakeApi:
        api = FakeApi(fetch, on_authenticate, upload)
        monkeypatch.setattr(kaggle_api, "make_api", lambda: api)
        return api
    return install
