"""src.submit: validate, then upload through the kaggle package (a fake here: Kaggle is out of reach)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from conftest import KEY, http_error  # tests/ is on sys.path (pytest's rootdir conftest)
import numpy as np
import pytest

from src import submit
from src.data.competition import CLEAN, SAMPLE, TEST, TRAIN
from src.data.pages import list_images, load_page, save_page
from src.data.synthetic import MARKER, sample_submission_text
from src.submission.writer import write_submission

PAGES = [(1, 3, 4), (2, 2, 4)]   # (page id, height, width)


@pytest.fixture
def files(tmp_path):
    """(valid submission, its sample submission in a competition-shaped data folder)."""
    data = tmp_path / "data"
    for folder in (TRAIN, CLEAN, TEST):
        save_page(data / folder / "9.png", np.zeros((2, 2), np.uint8))
    (data / SAMPLE).write_text(sample_submission_text(PAGES))
    out = tmp_path / "sub.csv"
    write_submission([(str(i), np.full((h, w), 0.5)) for i, h, w in PAGES], out)
    return out, data / SAMPLE


def run(capsys, *argv) -> tuple[int, str]:
    rc = submit.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def accepted(path, message, competition):
    return SimpleNamespace(message="Successfully submitted to Denoising Dirty Documents")


def test_valid_file_is_uploaded_with_its_message(fake_api, files, capsys):
    out, sample = files
    api = fake_api(upload=accepted)
    rc, text = run(capsys, str(out), "-m", "full, batch 4", "--sample", str(sample))
    assert rc == 0, text
    assert api.calls == [("denoising-dirty-documents", str(out), "full, batch 4")]
    assert f"OK: {out} is a valid submission, 20 rows" in text
    assert "a plain CSV: `make_submission --compress zip`" in text
    assert "submitted: Successfully submitted" in text and "/c/denoising-dirty-documents/submissions" in text
    assert KEY not in text


def test_invalid_file_is_refused_before_any_network(home, no_network, files, capsys):
    out, sample = files
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1] + ["2_2_4,1.5"]) + "\n")   # a value out of range
    rc, text = run(capsys, str(out), "-m", "x", "--sample", str(sample))
    assert rc == 1
    assert "INVALID" in text and "values outside [0, 1]" in text and "not uploaded" in text


def test_synthetic_sample_is_refused(home, no_network, files, synthetic_dir, capsys):
    assert (synthetic_dir / MARKER).exists()
    rc, text = run(capsys, str(files[0]), "-m", "x", "--data-dir", str(synthetic_dir))
    assert rc == 1 and "SYNTHETIC demo's sample submission" in text and "python -m src.download" in text


def test_demo_submission_is_refused_without_a_sample(home, no_network, tmp_path, synthetic_dir, monkeypatch,
                                                     capsys):
    demo = tmp_path / "demo.csv"
    write_submission([(p.stem, load_page(p)) for p in list_images(synthetic_dir / "test")], demo)
    monkeypatch.chdir(tmp_path)   # a fresh clone: competition/ holds no data
    (tmp_path / "competition").mkdir()
    rc, text = run(capsys, str(demo), "-m", "x")
    assert rc == 1 and "not uploaded: no sample submission in competition/" in text
    assert "python -m src.download" in text and "OK" not in text


def test_sample_is_found_in_the_data_folder_and_required(fake_api, files, tmp_path, capsys):
    out, sample = files
    api = fake_api(upload=accepted)
    rc, text = run(capsys, str(out), "-m", "x", "--data-dir", str(sample.parent))
    assert rc == 0 and f"checking ids against {sample}" in text, text
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, text = run(capsys, str(out), "-m", "x", "--data-dir", str(empty))   # valid format, ids unchecked
    assert rc == 1 and f"not uploaded: no sample submission in {empty}/" in text and len(api.calls) == 1
    with pytest.raises(SystemExit) as exit_:                                 # a typo is not "no data"
        submit.main([str(out), "-m", "x", "--data-dir", str(tmp_path / "competitoin")])
    assert exit_.value.code == 2 and "competitoin: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        submit.main([str(out), "-m", "x", "--sample", str(tmp_path)])
    assert exit_.value.code == 2 and "is a folder, not a sample submission" in capsys.readouterr().err


def test_no_credentials_says_how_to_upload_by_hand(home, no_network, files, capsys):
    out, sample = files
    rc, text = run(capsys, str(out), "-m", "x", "--sample", str(sample))
    assert rc == 1 and "KAGGLE_API_TOKEN" in text
    assert f"upload {out} by hand on https://www.kaggle.com/c/denoising-dirty-documents/submit" in text


@pytest.mark.parametrize("error, words", [
    (http_error(403), ["Kaggle refused the submission (HTTP 403)", "/c/denoising-dirty-documents/rules"]),
    (http_error(400, json.dumps({"code": 400, "message": "Submission limit reached"}).encode()),
     ["Kaggle answered HTTP 400 (Submission limit reached)", "by hand"]),
    (http_error(500, b"<html>oops</html>"), ["Kaggle answered HTTP 500; try again later"]),
    (RuntimeError(f"bad answer for {KEY}"), ["submission failed (RuntimeError: bad answer for ***)"]),
])
def test_failures_say_what_to_do(fake_api, files, capsys, error, words):
    def refuse(path, message, competition):
        raise error
    out, sample = files
    fake_api(upload=refuse)
    rc, text = run(capsys, str(out), "-m", "x", "--sample", str(sample))
    assert rc == 1 and "Traceback" not in text and KEY not in text
    for w in words:
        assert w in text


def test_incomplete_upload_is_an_error(fake_api, files, capsys):
    out, sample = files
    fake_api(upload=lambda *a: SimpleNamespace(message="Could not submit to competition"))
    rc, text = run(capsys, str(out), "-m", "x", "--sample", str(sample))
    assert rc == 1 and "did not complete (Could not submit to competition); run this again" in text


def test_missing_file_and_message(tmp_path, capsys):
    rc, text = run(capsys, str(tmp_path / "none.csv"), "-m", "x")
    assert rc == 1 and "none.csv: no such file" in text
    with pytest.raises(SystemExit) as err:
        submit.parse_args([str(tmp_path / "none.csv")])
    assert err.value.code == 2 and "-m/--message" in capsys.readouterr().err
