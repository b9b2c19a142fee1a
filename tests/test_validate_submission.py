import gzip
import math
import re
import zipfile

from conftest import unreadable_zip, zip_competition
import cv2
import numpy as np
import pytest

import src.submission.reader as submission
from src.submission.reader import validate_submission
from src.submission.writer import write_submission
from src.validate_submission import main


@pytest.fixture
def sample(tmp_path):
    """A 2x3 page 1 and a 1x2 page 4, like the competition's sample (all ones)."""
    path = tmp_path / "sample.csv"
    write_submission([("1", np.ones((2, 3))), ("4", np.ones((1, 2)))], path)
    return path


def lines(path):
    return path.read_text().splitlines()


def write(path, rows, header="id,value"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def only_problem(report, *fragments):
    assert not report.ok and len(report.problems) == 1, report.problems
    for fragment in fragments:
        assert fragment in report.problems[0], report.problems[0]


def test_accepts_valid_file_and_the_sample(sample, tmp_path):
    report = validate_submission(sample, sample=sample)
    assert report.ok and report.rows == 8 and report.problems == [] and report.rmse is None
    good = write(tmp_path / "good.csv", [row.replace(",1.0000", ",0.5") for row in lines(sample)[1:]][::-1])
    assert validate_submission(good, sample=sample).ok
    assert validate_submission(good).ok


def test_missing_id(sample, tmp_path):
    sub = write(tmp_path / "s.csv", lines(sample)[1:-1])
    only_problem(validate_submission(sub, sample=sample), "missing ids: 1 (e.g. 4_1_2)")


def test_extra_and_duplicated_ids(sample, tmp_path):
    sub = write(tmp_path / "s.csv", lines(sample)[1:] + ["1_2_1,0.5", "9_1_1,0.5"])
    report = validate_submission(sub, sample=sample)
    assert report.problems == ["extra ids: 1 (e.g. 9_1_1)", "duplicated ids: 1 (e.g. 1_2_1)"]
    only_problem(validate_submission(write(sub, lines(sample)[1:] + ["1_2_1,0.5"])), "duplicated ids: 1")


def test_bad_values(sample, tmp_path):
    rows = lines(sample)[1:]
    only_problem(validate_submission(write(tmp_path / "s.csv", rows[:2] + ["1_1_2,nan"] + rows[3:]), sample),
                 "NaN, inf or empty values: 1 (e.g. 1_1_2=nan)")
    ids = [re.split("[_,]", row) for row in rows]   # image, row, col, value
    zero_based = [f"{i}_{int(r) - 1}_{int(c) - 1},{v}" for i, r, c, v in ids]
    at_zero = sum(r == "1" or c == "1" for _, r, c, _ in ids)
    assert validate_submission(write(tmp_path / "s.csv", zero_based), sample).problems[-1] == (
        f"{at_zero:,} ids have row or col 0: ids are 1-based (page 1's top-left pixel is 1_1_1)")
    only_problem(validate_submission(write(tmp_path / "s.csv", rows[:2] + ["1_1_2,1.0000001"] + rows[3:]),
                                     sample), "values outside [0, 1]: 1 (e.g. 1_1_2=1.0000001)")   # not "1"
    # the id of a bad line is not reported a second time as missing
    only_problem(validate_submission(write(tmp_path / "s.csv", rows[:2] + ["1_1_2,dark"] + rows[3:]), sample),
                 "non-numeric values: 1 (e.g. line 4: 1_1_2='dark')")


def test_missing_ids_beside_bad_lines(sample, tmp_path):
    rows = lines(sample)[1:]
    report = validate_submission(write(tmp_path / "s.csv", rows[:2] + ["1_1_2;0.5"] + rows[4:]), sample)
    assert report.problems == [
        "malformed lines (want <image>_<row>_<col>,<value>): 1 (e.g. line 4: '1_1_2;0.5')",
        f"missing ids besides those on the bad lines above: 1 (e.g. {rows[3].split(',')[0]})"]


def test_bad_header(sample, tmp_path):
    sub = write(tmp_path / "s.csv", lines(sample)[1:], header="ID,Value")
    only_problem(validate_submission(sub, sample=sample), "header is 'ID,Value'; want 'id,value'")
    rows = [f"{k},{row}" for k, row in enumerate(lines(sample)[1:])]
    indexed = write(tmp_path / "s.csv", rows, header=",id,value")
    assert validate_submission(indexed, sample=sample).problems[0] == (
        "header is ',id,value'; want 'id,value' (a DataFrame's index was written: to_csv(..., index=False))")
    mac = tmp_path / "s.csv.zip"
    with zipfile.ZipFile(mac, "w") as zf:   # as macOS Finder's "Compress" makes it
        zf.writestr("s.csv", "id,value\n")
        zf.writestr("__MACOSX/._s.csv", b"resource fork")
    assert "(__MACOSX/ is macOS Finder's: zip the CSV with `zip -X`" in validate_submission(mac).problems[0]


@pytest.mark.parametrize("header", ['"id","value"', "\ufeffid,value", '\ufeff"id","value"'])
def test_header_as_excel_and_r_write_it(sample, tmp_path, header):
    """A BOM (Excel's CSV UTF-8) or quoted names (R's write.csv) read as id,value, as Kaggle reads them."""
    sub = write(tmp_path / "s.csv", lines(sample)[1:], header=header)
    assert validate_submission(sub, sample=sample).ok
    assert not validate_submission(write(sub, lines(sample)[1:], header='"id","val"'), sample=sample).ok
    assert not validate_submission(write(sub, lines(sample)[1:], header='"id,value"'), sample=sample).ok


def test_quotes_read_as_a_csv_reader_reads_them(sample, tmp_path):
    """R quotes the ids ("1_1_1",1): they read as ids. Quotes around more or less than a field do not."""
    rows = lines(sample)[1:]
    quoted = [f'"{i}",{v}' for i, v in (r.split(",") for r in rows)]
    assert validate_submission(write(tmp_path / "s.csv", quoted, header='"id","value"'), sample=sample).ok
    whole_line = write(tmp_path / "s.csv", [f'"{rows[0]}"'] + rows[1:])
    assert validate_submission(whole_line, sample).problems == [
        f"malformed lines (want <image>_<row>_<col>,<value>): 1 (e.g. line 2: '\"{rows[0]}\"')",
        "missing ids: 1 (e.g. 1_1_1)"]   # to a CSV reader one field: no value
    for bad in ('1_1_1",1', f'"{rows[0]}"'):   # the second among R's quoted ids: the fast path declines
        others = rows[1:] if bad.endswith(",1") else quoted[1:]
        report = validate_submission(write(tmp_path / "s.csv", [bad] + others), sample)
        assert report.problems[0].startswith(f"{submission.MALFORMED}: 1 (e.g. line 2:")


def test_garbage_text_and_bad_ids(sample, tmp_path):
    report = validate_submission(write(tmp_path / "s.csv", ["hello world", "1-1-1,0.5", "01_1_1,0.5"]))
    assert not report.ok and report.rows == 3
    assert report.problems[0] == ("malformed lines (want <image>_<row>_<col>,<value>): 3 "
                                  "(e.g. line 2: 'hello world', line 3: '1-1-1,0.5', line 4: '01_1_1,0.5')")
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 50)
    only_problem(validate_submission(tmp_path / "bin.csv"), "bin.csv: not a text CSV but binary data")
    report = validate_submission(write(tmp_path / "z.csv", ["1_0_1,0.5"]))
    only_problem(report, "ids with row or col 0 (ids are 1-based): 1")
    report = validate_submission(write(tmp_path / "big.csv", ["1_1_1,0.5", "1_99999999999999999999_1,0.5"]))
    only_problem(report, "malformed lines", "line 3: '1_99999999999999999999_1,0.5'")   # past 2**64


def test_unreadable_files_are_problems(tmp_path):
    (tmp_path / "s.zip").write_bytes(b"PK\x03\x04 not really a zip")
    only_problem(validate_submission(tmp_path / "s.zip"), "cannot read")
    text = "".join(f"1_{i}_1,{np.sin(i)}\n" for i in range(1, 1000)).encode()
    (tmp_path / "s.csv.gz").write_bytes(gzip.compress(b"id,value\n" + text)[:1000])
    only_problem(validate_submission(tmp_path / "s.csv.gz"), "cannot read")
    only_problem(validate_submission(tmp_path / "none.csv"), "none.csv: no such file")
    for kind, says in (("deflate64", "compression method"), ("encrypted", "encrypted")):
        z = unreadable_zip(tmp_path / f"{kind}.csv.zip", kind, "submission.csv", b"id,value\n1_1_1,1\n")
        only_problem(validate_submission(z), f"{kind}.csv.zip: cannot read it as a CSV", says)


def test_binary_files_are_not_text_csvs(sample, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 40)
    report = validate_submission(tmp_path / "model.pt", sample=sample)
    assert report.problems == [f"{tmp_path / 'model.pt'}: not a text CSV but binary data"]
    zipped = tmp_path / "s.csv.zip"
    write_submission([("1", np.ones((2, 3)))], zipped)
    plain_name = zipped.rename(tmp_path / "s.csv")              # the name says plain: read as plain
    only_problem(validate_submission(plain_name), "binary data (zip data: name it s.csv.zip)")


def test_bad_line_found_inside_a_large_block(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "BLOCK", 1 << 14)     # 4 blocks of ~1300 lines; the bad one is bisected
    out = tmp_path / "s.csv"
    write_submission([("1", np.full((50, 100), 0.5))], out)
    rows = lines(out)
    rows[3001] = "1_2_61;0.5"
    report = validate_submission(write(out, rows[1:]))
    assert report.rows == 5000
    assert report.problems == [
        "malformed lines (want <image>_<row>_<col>,<value>): 1 (e.g. line 3002: '1_2_61;0.5')"]


def test_compressed_submissions(sample, tmp_path):
    for compress in ("zip", "gz"):
        out = tmp_path / f"s.csv.{compress}"
        write_submission([("4", np.zeros((1, 2))), ("1", np.zeros((2, 3)))], out, compress=compress)
        assert validate_submission(out, sample=sample).ok


def save_png(folder, name, pixels):
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / name), np.asarray(pixels, np.uint8))


def test_rmse_hand_worked(tmp_path):
    save_png(tmp_path / "truth", "3.png", [[0, 0]])
    sub = write(tmp_path / "s.csv", ["3_1_1,0.1", "3_1_2,0.3"])
    report = validate_submission(sub, truth=tmp_path / "truth")
    assert report.ok and math.isclose(report.rmse, math.sqrt(0.05), rel_tol=1e-12)


def test_rmse_pools_pixels_like_numpy(tmp_path):
    rng = np.random.default_rng(0)
    truth = {"2": rng.integers(0, 256, (5, 7)), "11": rng.integers(0, 256, (3, 4))}
    preds = {k: rng.random(t.shape) for k, t in truth.items()}
    rows = []
    for k, t in truth.items():
        save_png(tmp_path / "truth", f"{k}.png", t)
        rows += [f"{k}_{r + 1}_{c + 1},{float(v)!r}" for (r, c), v in np.ndenumerate(preds[k])]
    sub = write(tmp_path / "s.csv", rows[::-1])
    err = np.concatenate([(preds[k] - truth[k] / 255).ravel() for k in truth])
    report = validate_submission(sub, truth=tmp_path / "truth")
    assert report.ok and abs(report.rmse - np.sqrt(np.mean(err ** 2))) < 1e-6
    report = validate_submission(write(sub, rows[1:]), truth=tmp_path / "truth")
    assert not report.ok and report.rmse is None and not any("no row at all" in p for p in report.problems)
    part = [r for r in rows if r.startswith("2_")]   # the file covers page 2 of the truth's 2 and 11
    report = validate_submission(write(sub, part), truth=tmp_path / "truth")
    assert report.problems[-1] == (
        f"1 of the 2 pages in {tmp_path / 'truth'} have no row at all (11): to score the pages the file "
        f"covers, pass --truth a folder of those pages alone")


def test_a_sample_and_a_data_folder_together_are_a_usage_error(sample, tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:   # one would be silently ignored
        main([str(sample), "--sample", str(sample), "--data-dir", str(tmp_path)])
    assert usage.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_command_exit_codes(sample, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["missing.csv"]) == 1
    assert capsys.readouterr().err == "error: missing.csv: no such file\n"
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}: is a folder, not a submission file\n"
    assert main([str(sample)]) == 0
    assert "checking the format only" in capsys.readouterr().out
    bad = write(tmp_path / "bad.csv", lines(sample)[1:-1])
    assert main([str(bad), "--sample", str(sample)]) == 1
    assert "missing ids: 1" in capsys.readouterr().out
    (tmp_path / "competition").mkdir()
    (tmp_path / "competition" / "sampleSubmission.csv").write_text(sample.read_text())
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "checking ids against competition/sampleSubmission.csv" in out and "INVALID" in out


@pytest.mark.parametrize("flag, path, message", [
    ("--sample", "nope.csv", "no such file"), ("--sample", ".", "is a folder, not a sample submission"),
    ("--truth", "nope", "no such folder"), ("--truth", "s.csv", "is a file, not a folder of pages")])
def test_missing_reference_is_a_usage_error(flag, path, message, tmp_path, monkeypatch, capsys):
    import src.validate_submission as cmd

    def no_read(*args, **kwargs):
        raise AssertionError("read the submission though the reference is not there")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cmd, "validate_submission", no_read)
    write(tmp_path / "s.csv", ["1_1_1,0.5"])
    with pytest.raises(SystemExit) as err:
        main(["s.csv", flag, path])
    assert err.value.code == 2
    assert f"python -m src.validate_submission: error: {flag} {path}: {message}\n" in capsys.readouterr().err


def test_command_prints_rmse(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "truth", "3.png", [[0, 0]])
    sub = write(tmp_path / "s.csv", ["3_1_1,0.1", "3_1_2,0.3"])
    assert main([str(sub), "--truth", "truth"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("OK") and "2 rows, RMSE 0.223607" in last


def test_synthetic_sample_says_kaggle_would_reject_the_file(synthetic_dir, sample, capsys):
    demo = synthetic_dir / "sampleSubmission.csv"
    assert main([str(demo), "--sample", str(demo)]) == 0
    ok, note = capsys.readouterr().out.splitlines()[-2:]
    assert ok.startswith(f"OK: {demo} is a valid submission for the SYNTHETIC demo pages only, ")
    assert note.startswith(f"NOTE: {demo} is the SYNTHETIC demo sample") and "not the competition's test " \
        "pages, so Kaggle would reject it" in note and "`python -m src.download`" in note
    assert main([str(sample), "--sample", str(sample)]) == 0
    out = capsys.readouterr().out          # a sample of no synthetic set: no note
    assert "NOTE" not in out and f"OK: {sample} is a valid submission, " in out


def test_default_synthetic_sample_named_on_a_mismatch(synthetic_dir, sample, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "competition" / "synthetic").mkdir(parents=True)
    for name in ("sampleSubmission.csv", ".synthetic"):
        (tmp_path / "competition" / "synthetic" / name).write_bytes((synthetic_dir / name).read_bytes())
    # the demo's sample, picked for want of the competition's: a file with other ids is judged by its format
    assert main([str(sample)]) == 0
    out = capsys.readouterr().out
    assert "the ids are not those of competition/synthetic/sampleSubmission.csv" in out
    assert out.splitlines()[-2].startswith("OK") and out.splitlines()[-1].startswith(
        "NOTE: the ids were not checked: there is no competition sample submission in competition/")
    assert main([str(write(tmp_path / "nan.csv", lines(sample)[1:2] + ["1_1_2,nan"]))]) == 1   # format: still
    assert "NaN" in capsys.readouterr().out
    demo = lines(tmp_path / "competition" / "synthetic" / "sampleSubmission.csv")
    assert main([str(write(tmp_path / "demo.csv", demo[1:-1] + [demo[-1].replace(",1", ",1.7")]))]) == 1
    out = capsys.readouterr().out   # the demo's ids, one bad value: the ids were checked, and matched
    assert "values outside [0, 1]: 1" in out and "not those of" not in out and "not checked" not in out
    assert main([str(tmp_path / "competition" / "synthetic" / "sampleSubmission.csv")]) == 0
    assert "Kaggle would reject it" in capsys.readouterr().out


def test_data_dir_names_where_the_competition_sample_is(synthetic_dir, tmp_path, monkeypatch, capsys):
    """Data kept elsewhere (the zips, not yet extracted): its sample, not the demo's, checks the ids."""
    monkeypatch.chdir(tmp_path)
    zips = zip_competition(synthetic_dir, tmp_path / "elsewhere")
    good = synthetic_dir / "sampleSubmission.csv"
    assert main([str(good), "--data-dir", str(zips)]) == 0
    out = capsys.readouterr().out
    assert f"checking ids against {zips / 'sampleSubmission.csv'}" in out and "NOTE" not in out
    bad = write(tmp_path / "bad.csv", lines(good)[1:-1])
    assert main([str(bad), "--data-dir", str(zips)]) == 1 and "missing ids: 1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:    # a mistyped folder is an error, not a format-only check
        main([str(good), "--data-dir", str(tmp_path / "elsewehre")])
    assert exit_.value.code == 2 and "elsewehre: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):   # the zip itself
        main([str(good), "--data-dir", str(zips / "train.zip")])
    assert (f"train.zip: is a file; --data-dir takes the folder that holds the competition zip "
            f"(here: {zips})") in capsys.readouterr().err


def test_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m src.validate_submission ")
    assert all(part.count("default") <= 1 for part in text.split("\n  -"))


@pytest.mark.shared
@pytest.mark.slow
def test_real_sample_submission_is_valid(tmp_path, real_zip):
    from src.data.competition import prepare_data
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / real_zip.name).symlink_to(real_zip)
    sample = prepare_data(tmp_path / "data").sample_submission
    report = validate_submission(sample, sample=sample)
    assert report.ok, report.problems
    assert report.rows == 14_230_080


def test_a_sample_that_is_none_and_an_empty_submission_pass_nothing(sample, tmp_path):
    header_only = write(tmp_path / "h.csv", [])
    only_problem(validate_submission(header_only), "no rows: a submission holds one row per pixel")
    only_problem(validate_submission(sample, sample=header_only), "h.csv: holds no ids")
    notes = write(tmp_path / "notes.csv", ["buy milk", "1_1_1 is the top left pixel"])
    only_problem(validate_submission(sample, sample=notes), "notes.csv: not a sample submission")


def test_the_format_alone_is_not_called_a_valid_submission(sample, tmp_path, capsys):
    fragment = write(tmp_path / "part.csv", lines(sample)[1:4])
    report = validate_submission(fragment)
    assert report.ok and not report.ids_checked
    assert report.text(fragment) == f"OK: {fragment} is well-formed, 3 rows; its ids were not checked"
    (tmp_path / "empty").mkdir()   # a --data-dir named for its sample, without one: a usage error
    with pytest.raises(SystemExit) as usage:
        main([str(fragment), "--data-dir", str(tmp_path / "empty")])
    assert usage.value.code == 2
    assert "no sample submission (sampleSubmission.csv) there" in capsys.readouterr().err
