"""src.download, src.kaggle.download and src.kaggle.api: credentials, failures with advice, fake
downloads, --check."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
import zipfile

from conftest import KEY, FakeApi, http_error  # tests/ is on sys.path (pytest's rootdir conftest)
import cv2
import numpy as np
import pytest
import requests

from src import download
from src.data.competition import COMPETITION
from src.kaggle import api as kaggle_api

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures: competition-shaped zips

def png(h: int = 6, w: int = 8, value: int = 128) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((h, w), value, np.uint8))
    assert ok
    return buf.tobytes()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def competition_zip(path: Path, noisy=("1", "2"), clean=None, tests=("3",), broken: str | None = None) -> int:
    """Write a zips-inside-a-zip like Kaggle's; pages are 6x8. broken: 'train/2.png' is cut short.

    Returns the number of sample-submission rows (pixels of the test pages).
    """
    clean = noisy if clean is None else clean

    def pages(folder, ids):
        files = {f"{folder}/{i}.png": png() for i in ids}
        if broken in files:
            files[broken] = files[broken][:30]
        return zip_bytes(files)

    rows = [f"{t}_{r}_{c},1" for t in tests for r in range(1, 7) for c in range(1, 9)]
    sample = zip_bytes({"sampleSubmission.csv": ("id,value\n" + "\n".join(rows) + "\n").encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes({
        "train.zip": pages("train", noisy), "train_cleaned.zip": pages("train_cleaned", clean),
        "test.zip": pages("test", tests), "sampleSubmission.csv.zip": sample}))
    return len(rows)


def digits_zip(path: Path, train_rows: int = 3, test_rows: int = 2, train_columns: int = 785) -> None:
    def csv(header, row, rows):
        return (",".join(header) + "\n" + "".join(",".join(row) + "\n" for _ in range(rows))).encode()
    pixels = [f"pixel{i}" for i in range(train_columns - 1)]
    train = csv(["label"] + pixels, ["7"] + ["0"] * len(pixels), train_rows)
    test = csv([f"pixel{i}" for i in range(784)], ["0"] * 784, test_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes({"train.csv": train, "test.csv": test}))


def run_main(capsys, *argv) -> tuple[int, str]:
    rc = download.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def raising(exc):
    def fetch(competition, folder):
        raise exc
    return fetch


# ---------------------------------------------------------------- no credentials

def test_no_credentials_exits_with_instructions_and_no_network(home, no_network, tmp_path, capsys):
    t0 = time.monotonic()
    rc, out = run_main(capsys, "--data-dir", str(tmp_path / "data"))
    assert rc == 1
    assert time.monotonic() - t0 < 5
    for needed in ("KAGGLE_API_TOKEN", "kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY",
                   "https://www.kaggle.com/c/denoising-dirty-documents/data", "--check"):
        assert needed in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()


def test_no_credentials_message_names_the_default_folder(home, no_network, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.chdir(home)   # a competition/ of its own, empty: the project's may hold the data
    rc, out = run_main(capsys)
    assert rc == 1
    assert "~/.kaggle/kaggle.json" in out
    assert "drop it into competition/, then run `python -m src.download --check`" in out


def test_kaggle_json_that_is_not_json_is_named_as_such(tmp_path):
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "bob", "key": ')
    msg = kaggle_api.missing_credentials_message("", env={}, home=tmp_path)
    assert "~/.kaggle/kaggle.json exists but is not valid JSON (Expecting value: line 1" in msg
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "bob"}')
    assert "exists but holds no" in kaggle_api.missing_credentials_message("", env={}, home=tmp_path)


def test_half_set_key_is_named(home, no_network, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.chdir(home)   # as above
    rc, out = run_main(capsys)
    assert rc == 1 and "KAGGLE_USERNAME is set but not its partner" in out


def test_real_command_without_credentials_fails_fast_and_quietly(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KAGGLE_") and k not in kaggle_api.PROXY_VARS and k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    # an explicit, empty data dir: a checkout may already hold the zip in competition/
    cmd = [sys.executable, "-m", "src.download", "--data-dir", str(tmp_path / "competition")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - t0 < 30
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "KAGGLE_API_TOKEN" in out
    assert len(out.splitlines()) <= 6
    assert list(home.iterdir()) == []          # the kaggle package was never imported


# ---------------------------------------------------------------- failures explained

@pytest.mark.parametrize("status, words", [
    (401, ["HTTP 401", "invalid or expired", "https://www.kaggle.com/settings/api"]),
    (403, ["HTTP 403", "https://www.kaggle.com/c/denoising-dirty-documents/rules", "invalid or expired"]),
    (404, ["HTTP 404", "--competition"]),
])
def test_http_errors_say_what_to_do(fake_api, tmp_path, capsys, status, words):
    fake_api(raising(http_error(status)))
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1
    for w in words:
        assert w in out
    assert "Traceback" not in out


def test_rejected_credentials_at_authenticate(fake_api, tmp_path, capsys):
    def refuse():
        print("Authentication required to call the Kaggle API.\n" * 18)
        raise SystemExit(1)
    fake_api(raising(AssertionError("no download after a failed login")), on_authenticate=refuse)
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1
    assert "did not accept the credentials from KAGGLE_KEY" in out
    assert "Authentication required" not in out    # the package's help text is swallowed


@pytest.mark.parametrize("exc, reason", [
    (requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com' (Name or service not known)"),
     "DNS"),
    (requests.exceptions.ConnectTimeout("timed out"), "timed out"),
    (ConnectionAbortedError(103, "Software caused connection abort"), "no connection"),
])
def test_network_errors_say_kaggle_cannot_be_reached(fake_api, tmp_path, capsys, exc, reason):
    fake_api(raising(exc))
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1
    assert "cannot reach Kaggle" in out and reason in out
    assert "download the zip by hand" in out and "Traceback" not in out


def test_unresolvable_host_fails_before_the_kaggle_package_loads(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)

    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket, "create_connection", no_dns)
    monkeypatch.setattr(kaggle_api, "make_api", lambda: pytest.fail("kaggle imported without a network"))
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1 and "cannot reach Kaggle (DNS lookup of api.kaggle.com failed)" in out


def test_interrupted_download_leaves_no_zip_in_place(fake_api, tmp_path, capsys):
    def cut(competition, folder):
        folder.mkdir(parents=True)
        (folder / f"{competition}.zip").write_bytes(b"PK\x03\x04 half")
        raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
    fake_api(cut)
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1 and "broke off during the download; run this again to resume it" in out
    assert not (tmp_path / f"{COMPETITION}.zip").exists()
    assert (tmp_path / kaggle_api.PARTIAL_DIR / f"{COMPETITION}.zip").exists()   # kept for the resume


# ---------------------------------------------------------------- secrets

def test_key_is_scrubbed_from_errors_and_package_output(fake_api, tmp_path, capsys):
    def leaky(competition, folder):
        print(f"Error: HTTPError: https://bob:{KEY}@api.kaggle.com")
        print(f"key={KEY}", file=sys.stderr)
        raise RuntimeError(f"unexpected answer for key {KEY}")
    fake_api(leaky)
    rc, out = run_main(capsys, "--data-dir", str(tmp_path))
    assert rc == 1
    assert KEY not in out and "***" in out
    assert "download failed (RuntimeError" in out


def test_loose_kaggle_json_warns_and_never_prints_the_key(home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    cfg = home / ".kaggle" / "kaggle.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"username": "bob", "key": KEY}))
    cfg.chmod(0o644)
    monkeypatch.setattr(kaggle_api, "check_reachable", lambda *a, **k: None)
    monkeypatch.setattr(kaggle_api, "make_api", lambda: FakeApi(
        lambda c, folder: competition_zip(folder / f"{c}.zip")))
    rc, out = run_main(capsys, "--data-dir", str(tmp_path / "data"))
    assert rc == 0, out
    assert "chmod 600 ~/.kaggle/kaggle.json" in out
    assert "credentials from ~/.kaggle/kaggle.json" in out
    assert KEY not in out


def test_credentials_repr_hides_the_secret():
    assert KEY not in repr(kaggle_api.Credentials("KAGGLE_KEY", (KEY,)))


def test_find_credentials_follows_the_package_order(tmp_path):
    home = tmp_path
    find = kaggle_api.find_credentials
    assert find({}, home) is None
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "credentials.json").write_text(json.dumps({"refresh_token": "rrrrrr"}))
    assert find({}, home).source.startswith("~/.kaggle/credentials.json")
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "bob"}))
    assert find({"KAGGLE_KEY": KEY}, home).secrets == (KEY,)       # file + environment combine
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "bob", "key": KEY}))
    assert find({}, home).source == "~/.kaggle/kaggle.json"
    (home / ".kaggle" / "access_token").write_text("tok123\n")
    assert find({}, home).source == "~/.kaggle/access_token"
    token_file = tmp_path / "token.txt"
    token_file.write_text("filetoken\n")
    assert find({"KAGGLE_API_TOKEN": str(token_file)}, home).secrets == ("filetoken",)
    assert find({"KAGGLE_API_TOKEN": "x" * 5000}, home).source == "KAGGLE_API_TOKEN"


# ---------------------------------------------------------------- downloads with a fake API

def test_download_moves_the_zip_into_place_and_prints_the_summary(fake_api, tmp_path, capsys):
    data = tmp_path / "competition"
    api = fake_api(lambda competition, folder: competition_zip(folder / f"{competition}.zip"))
    rc, out = run_main(capsys, "--data-dir", str(data))
    assert rc == 0, out
    assert api.calls == [(COMPETITION, str(data / kaggle_api.PARTIAL_DIR))]
    assert (data / f"{COMPETITION}.zip").is_file()
    assert not (data / kaggle_api.PARTIAL_DIR).exists()
    assert "2 training pairs, 1 test pages, sample submission: 48 rows" in out
    assert KEY not in out


def test_existing_zip_is_not_downloaded_again_unless_forced(fake_api, tmp_path, capsys):
    data = tmp_path / "competition"
    competition_zip(data / f"{COMPETITION}.zip")
    api = fake_api(lambda c, folder: competition_zip(folder / f"{c}.zip", noisy=("1", "2", "5")))
    rc, out = run_main(capsys, "--data-dir", str(data))
    assert rc == 0 and api.calls == [] and "already there" in out
    assert "2 training pairs" in out
    (data / ".synthetic").touch()               # as if the folders held the embedded synthetic set
    rc, out = run_main(capsys, "--data-dir", str(data), "--force")
    assert rc == 0 and len(api.calls) == 1
    assert "3 training pairs" in out            # the new zip, not the folders extracted from the old one
    assert "SYNTHETIC" not in out


def test_download_digit_recognizer_extracts_and_counts(fake_api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_api(lambda c, folder: digits_zip(folder / f"{c}.zip"))
    rc, out = run_main(capsys, "--competition", "digit-recognizer")
    assert rc == 0, out
    assert "train.csv: 3 rows, test.csv: 2 rows" in out
    assert (tmp_path / "competition" / "digit-recognizer" / "train.csv").is_file()


# ---------------------------------------------------------------- --check (no network)

def test_check_counts_what_is_on_disk(home, no_network, tmp_path, capsys):
    rows = competition_zip(tmp_path / "competition" / f"{COMPETITION}.zip", noisy=("1", "2", "10"),
                           tests=("3", "4"))
    rc, out = run_main(capsys, "--check", "--data-dir", str(tmp_path / "competition"))
    assert rc == 0, out
    assert f"3 training pairs, 2 test pages, {rows:,} sample rows" in out


def test_check_uses_the_default_folder(home, no_network, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    competition_zip(tmp_path / "competition" / "renamed-by-browser.zip")
    rc, out = run_main(capsys, "--check")
    assert rc == 0 and "2 training pairs, 1 test pages, 48 sample rows" in out


@pytest.mark.parametrize("layout", ["outer", "inner"])
def test_check_refuses_a_member_that_escapes(home, no_network, tmp_path, capsys, layout):
    data = tmp_path / "box" / "competition"
    data.mkdir(parents=True)
    evil = zip_bytes({"train/1.png": png(), "../evil.png": png()})
    if layout == "outer":
        (data / f"{COMPETITION}.zip").write_bytes(zip_bytes({"train.zip": evil, "../evil.png": png()}))
    else:
        (data / "train.zip").write_bytes(evil)
    rc, out = run_main(capsys, "--check", "--data-dir", str(data))
    assert rc == 1
    assert "'../evil.png'" in out and "refused" in out and "Traceback" not in out
    assert not (tmp_path / "box" / "evil.png").exists()
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.name for p in data.iterdir())      # only the zip we put there


@pytest.mark.parametrize("broken", ["train/2.png", "train_cleaned/1.png", "test/3.png"])
def test_check_names_a_truncated_png(home, no_network, tmp_path, capsys, broken):
    competition_zip(tmp_path / f"{COMPETITION}.zip", broken=broken)
    rc, out = run_main(capsys, "--check", "--data-dir", str(tmp_path))
    assert rc == 1
    assert f"{Path(broken)}: not a readable image (truncated" in out


def test_check_names_a_page_without_clean_partner(home, no_network, tmp_path, capsys):
    competition_zip(tmp_path / f"{COMPETITION}.zip", noisy=("1", "2"), clean=("1",))
    rc, out = run_main(capsys, "--check", "--data-dir", str(tmp_path))
    assert rc == 1
    assert f"{Path('train', '2.png')}: noisy page has no clean partner" in out


def test_check_on_an_empty_folder_says_how_to_get_the_data(home, no_network, tmp_path, capsys):
    rc, out = run_main(capsys, "--check", "--data-dir", str(tmp_path))
    assert rc == 1 and "no competition data found" in out


def test_check_digit_recognizer(home, no_network, tmp_path, capsys):
    digits_zip(tmp_path / "digit-recognizer.zip", train_rows=4, test_rows=1)
    rc, out = run_main(capsys, "--check", "--competition", "digit-recognizer", "--data-dir", str(tmp_path))
    assert rc == 0 and "train.csv: 4 rows, test.csv: 1 rows" in out


def test_check_digit_recognizer_rejects_a_wrong_header(home, no_network, tmp_path, capsys):
    digits_zip(tmp_path / "digit-recognizer.zip", train_columns=10)
    rc, out = run_main(capsys, "--check", "--competition", "digit-recognizer", "--data-dir", str(tmp_path))
    assert rc == 1 and "train.csv: header has 10 columns, expected 785" in out


def test_check_digit_recognizer_without_data(home, no_network, tmp_path, capsys):
    rc, out = run_main(capsys, "--check", "--competition", "digit-recognizer", "--data-dir", str(tmp_path))
    assert rc == 1 and "https://www.kaggle.com/c/digit-recognizer/data" in out


# ---------------------------------------------------------------- the real data, when present

def _png_size(zf: zipfile.ZipFile, name: str) -> tuple[int, int]:
    head = zf.open(name).read(24)       # PNG signature + IHDR: width and height, big-endian
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.shared
def test_check_on_the_shared_competition_zip(home, no_network, tmp_path, capsys, real_zip):
    with zipfile.ZipFile(real_zip) as outer:
        train = zipfile.ZipFile(io.BytesIO(outer.read("train.zip")))
        test = zipfile.ZipFile(io.BytesIO(outer.read("test.zip")))
    pairs = sum(n.startswith("train/") and n.endswith(".png") for n in train.namelist())
    test_pages = [n for n in test.namelist() if n.startswith("test/") and n.endswith(".png")]
    rows = sum(w * h for w, h in (_png_size(test, n) for n in test_pages))   # one row per test pixel
    data = tmp_path / "competition"
    data.mkdir()
    try:
        (data / real_zip.name).symlink_to(real_zip)
    except OSError:
        shutil.copy(real_zip, data)
    rc, out = run_main(capsys, "--check", "--data-dir", str(data))
    assert rc == 0, out
    assert f"{pairs} training pairs, {len(test_pages)} test pages, {rows:,} sample rows" in out


def test_fake_api_calls_fit_the_real_kaggle_package(home):
    """The fakes above stand in for KaggleApi: the calls made on them must bind on the real one, so
    that a kaggle release renaming a parameter fails here rather than on a user's upload."""
    import inspect

    real = kaggle_api.make_api()   # imports the installed package (HOME is empty: nothing is sent)
    inspect.signature(real.competition_download_files).bind(COMPETITION, path="x", quiet=False)
    inspect.signature(real.competition_submit).bind("s.csv", "message", COMPETITION, quiet=False)
    assert real.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE == FakeApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE
    for name in ("competition_download_files", "competition_submit", "authenticate"):
        fake = inspect.signature(getattr(FakeApi, name)).parameters
        assert set(fake) - {"self"} <= set(inspect.signature(getattr(real, name)).parameters), name
