import numpy as np
import pytest

from src.inference.metrics import rmse
from src.submission.reader import SubmissionError, read_submission
from src.submission.writer import submission_path, write_submission

PAGE = np.array([[0.1, 0.25],
                 [0.33333, 1.5],      # clipped to 1
                 [-0.2, 0.123456]])   # clipped to 0; rounded to 4 decimals

# hand-written: ids are <page>_<row>_<col>, 1-based, listed column by column like the sample
EXPECTED = """id,value
7_1_1,0.1000
7_2_1,0.3333
7_3_1,0.0000
7_1_2,0.2500
7_2_2,1.0000
7_3_2,0.1235
"""


def pages(*ids, shape=(3, 2)):
    rng = np.random.default_rng(0)
    return [(i, rng.random(shape)) for i in ids]


def test_writes_hand_checked_rows(tmp_path):
    out = tmp_path / "sub.csv"
    assert write_submission([("7", PAGE)], out) == 6
    assert out.read_text() == EXPECTED


def test_pages_of_any_size_and_id_length(tmp_path):
    out = tmp_path / "sub.csv"
    given = pages("1", "10", "100", shape=(12, 11)) + pages("2", shape=(3, 5))
    assert write_submission(given, out) == 3 * 132 + 15
    df = read_submission(out)
    assert df.id.iloc[0] == "1_1_1" and df.id.iloc[-1] == "2_3_5"
    for page_id, pred in given:
        got = df[df.id.str.startswith(f"{page_id}_")].value.to_numpy().reshape(pred.shape[1], -1).T
        np.testing.assert_allclose(got, pred, atol=5e-5)


@pytest.mark.parametrize("compress, suffix", [("zip", ".csv.zip"), ("gz", ".csv.gz")])
def test_compressed_round_trip(tmp_path, compress, suffix):
    out = tmp_path / f"sub{suffix}"
    write_submission([("7", PAGE)], out, compress=compress)
    df = read_submission(out)
    assert df.columns.tolist() == ["id", "value"]
    assert df.id.tolist() == [line.split(",")[0] for line in EXPECTED.splitlines()[1:]]
    np.testing.assert_allclose(df.value, [0.1, 0.3333, 0, 0.25, 1, 0.1235])


def test_zip_holds_submission_csv(tmp_path):
    import zipfile
    write_submission([("7", PAGE)], tmp_path / "s.zip", compress="zip")
    assert zipfile.ZipFile(tmp_path / "s.zip").namelist() == ["submission.csv"]


def test_failure_mid_write_keeps_previous_file(tmp_path):
    out = tmp_path / "sub.csv"
    out.write_text("previous\n")

    def failing():
        yield "1", PAGE
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        write_submission(failing(), out)
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


def test_bad_pages_are_refused(tmp_path):
    with pytest.raises(SubmissionError, match="page 3 given twice"):
        write_submission(pages("3", "3"), tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="NaN"):
        write_submission([("1", np.full((2, 2), np.nan))], tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="shape"):
        write_submission([("1", np.zeros((2, 2, 3)))], tmp_path / "s.csv")
    with pytest.raises(ValueError, match="compress"):
        write_submission(pages("1"), tmp_path / "s.csv", compress="rar")
    assert list(tmp_path.iterdir()) == []


def test_ids_checked_against_sample(tmp_path):
    sample = tmp_path / "sample.csv"
    write_submission(pages("1", "2"), sample)
    assert write_submission(pages("2", "1"), tmp_path / "ok.csv", sample=sample) == 12

    out = tmp_path / "sub.csv"
    out.write_text("previous\n")
    with pytest.raises(SubmissionError) as e:
        write_submission(pages("1", "5", shape=(3, 3)), out, sample=sample)
    msg = str(e.value)
    assert "missing ids (in the sample, not written): 6 (e.g. 2_1_1, 2_2_1" in msg
    assert "extra ids (written, not in the sample): 12 (e.g. 1_1_3, 1_2_3, 1_3_3, 5_1_1, 5_2_1)" in msg
    assert out.read_text() == "previous\n"
    with pytest.raises(SubmissionError, match="extra ids.*: 6 .*abc_1_1"):
        write_submission(pages("1", "2", "abc"), out, sample=sample)
    gz = tmp_path / "gz.csv"   # a gzipped sample named .csv: its bytes are no ids, not ids that differ
    write_submission(pages("1", "2"), tmp_path / "gz.csv.gz")
    (tmp_path / "gz.csv.gz").rename(gz)
    with pytest.raises(SubmissionError, match=r"gz\.csv: not a text CSV but binary data \(gz data: name it "
                                              r"gz\.csv\.gz\)$"):
        write_submission(pages("1", "2"), out, sample=gz)
    assert out.read_text() == "previous\n"


def test_rounding_to_4_decimals_barely_moves_rmse(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (64, 80)) / 255
    pred = np.clip(truth + rng.normal(0, 0.02, truth.shape), 0, 1)
    write_submission([("1", pred)], tmp_path / "s.csv")
    written = read_submission(tmp_path / "s.csv").value.to_numpy().reshape(80, 64).T
    assert abs(rmse(written, truth) - rmse(pred, truth)) < 1e-5


@pytest.mark.parametrize("out, compress, want", [
    ("s.csv", None, ("s.csv", None)), ("s.csv", "gz", ("s.csv.gz", "gz")),
    ("s.csv.gz", None, ("s.csv.gz", "gz")), ("s.csv.gz", "gz", ("s.csv.gz", "gz")),
    ("S.CSV.ZIP", None, ("S.CSV.ZIP", "zip")), ("s.csv", "zip", ("s.csv.zip", "zip"))])
def test_submission_path_name_and_compression_agree(out, compress, want):
    path, got = submission_path(out, compress)
    assert (str(path), got) == want


def test_compressed_name_is_never_written_plain(tmp_path):
    write_submission([("7", PAGE)], tmp_path / "s.csv.gz")
    assert (tmp_path / "s.csv.gz").read_bytes()[:2] == b"\x1f\x8b"      # gzip's magic number
    assert read_submission(tmp_path / "s.csv.gz").shape == (6, 2)
    with pytest.raises(ValueError, match=r"s\.csv\.zip: a \.zip name, but compress='gz'"):
        submission_path(tmp_path / "s.csv.zip", "gz")
    with pytest.raises(ValueError, match="a .zip name"):
        write_submission([("7", PAGE)], tmp_path / "s.csv.zip", compress="gz")
    with pytest.raises(ValueError, match=r"s\.csv: a name without \.zip or \.gz, but compress='zip'"):
        write_submission([("7", PAGE)], tmp_path / "s.csv", compress="zip")   # zip bytes in a .csv
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv.gz"]
