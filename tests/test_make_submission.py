import numpy as np
import pytest
import torch

from src.data.pages import list_images, load_page, save_page
from src.make_submission import main, parse_args
from src.models.checkpoints import make_checkpoint, save_checkpoint
from src.models.registry import build_model
from src.submission.reader import read_submission, validate_submission
from tests.conftest import identity_checkpoint
from tests.test_consensus import on_background, text_page


@pytest.fixture
def identity_ckpt(tmp_path):
    """The identity: its submission is the input."""
    return identity_checkpoint(tmp_path / "identity.pt")


def test_submission_for_test_pages_matches_sample_and_pixels(tmp_path, synthetic_dir, identity_ckpt, capsys):
    out = tmp_path / "sub" / "submission.csv"
    assert main(["--checkpoint", str(identity_ckpt), "--data-dir", str(synthetic_dir),
                 "--out", str(out)]) == 0
    log = capsys.readouterr().out
    # consensus is on for test pages: the fixture's two are one text, and take their median (their mean)
    assert "wrote" in log and "2 pages, 2 of them showing 1 text of 2 pages each" in log
    report = validate_submission(out, sample=synthetic_dir / "sampleSubmission.csv")
    assert report.ok, report.problems
    df = read_submission(out).set_index("id")["value"]
    page, other = list_images(synthetic_dir / "test")
    img = (load_page(page) + load_page(other)) / 2
    for r, c in [(1, 1), (img.shape[0], img.shape[1]), (7, 13)]:
        assert df[f"{page.stem}_{r}_{c}"] == pytest.approx(img[r - 1, c - 1], abs=6e-5)


def test_images_folder_scored_against_truth(tmp_path, synthetic_dir, identity_ckpt, capsys):
    out = tmp_path / "val.csv.gz"
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(synthetic_dir / "train"),
                 "--out", str(tmp_path / "val.csv"), "--compress", "gz", "--no-consensus"]) == 0
    report = validate_submission(out, truth=synthetic_dir / "train_cleaned")
    noisy = [load_page(p) for p in list_images(synthetic_dir / "train")]
    clean = [load_page(p) for p in list_images(synthetic_dir / "train_cleaned")]
    expected = np.sqrt(sum(((n - c) ** 2).sum() for n, c in zip(noisy, clean)) / sum(c.size for c in clean))
    assert report.ok and report.rmse == pytest.approx(expected, abs=1e-4)
    # by default pages of the competition's sizes are cleaned with their text's other pages, as test pages
    capsys.readouterr()
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(synthetic_dir / "train"),
                 "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "every page has a size of the competition's" in log and "3 texts of 2 pages each" in log
    together = validate_submission(out, truth=synthetic_dir / "train_cleaned").rmse
    assert together < report.rmse - 0.005   # the mean of two backgrounds is nearer white than either


def test_ensemble_and_tta(tmp_path, synthetic_dir, identity_ckpt):
    out = tmp_path / "e.csv"
    assert main(["--checkpoint", str(identity_ckpt), "--checkpoint", str(identity_ckpt), "--tta",
                 "--data-dir", str(synthetic_dir), "--out", str(out)]) == 0
    assert validate_submission(out, sample=synthetic_dir / "sampleSubmission.csv").ok


def test_png_dir_keeps_the_cleaned_pages(tmp_path, synthetic_dir):
    torch.manual_seed(0)   # a model that changes the page, so the PNGs must be its output, not the input
    path = tmp_path / "random.pt"
    save_checkpoint(path, make_checkpoint(build_model("unet", width=4, depth=1), kind="denoiser",
                                          model_name="unet", model_config=dict(width=4, depth=1), config={}))
    pages, out, png = synthetic_dir / "test", tmp_path / "s.csv", tmp_path / "cleaned"
    assert main(["--checkpoint", str(path), "--images", str(pages), "--out", str(out), "--no-tta",
                 "--png-dir", str(png)]) == 0
    assert sorted(p.name for p in png.iterdir()) == sorted(p.name for p in list_images(pages))
    csv = read_submission(out).set_index("id")["value"]
    for page in list_images(png):
        img, noisy = load_page(page), load_page(pages / page.name)
        values = np.array([csv[f"{page.stem}_{r}_{c}"] for r, c in [(1, 1), (9, 17), img.shape]])
        got = np.array([img[r - 1, c - 1] for r, c in [(1, 1), (9, 17), img.shape]])
        assert img.shape == noisy.shape and np.abs(got - values).max() <= 1 / 510 + 6e-5
        assert np.abs(img - noisy).max() > 0.01


def test_png_dir_may_not_be_the_folder_of_the_pages(tmp_path, tiny_pages, identity_ckpt, capsys):
    before = (tiny_pages / "3.png").read_bytes()
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages),
                 "--out", str(tmp_path / "s.csv"), "--png-dir", f"{tiny_pages}/../{tiny_pages.name}"]) == 1
    assert "holds the pages being cleaned" in capsys.readouterr().err
    assert (tiny_pages / "3.png").read_bytes() == before and not (tmp_path / "s.csv").exists()


def test_errors_are_one_line(tmp_path, synthetic_dir, identity_ckpt, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--data-dir", str(synthetic_dir)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    ae = tmp_path / "ae.pt"
    save_checkpoint(ae, make_checkpoint(build_model("unet", width=4, depth=1), kind="autoencoder",
                                        model_name="unet", model_config=dict(width=4, depth=1), config={}))
    assert main(["--checkpoint", str(ae), "--data-dir", str(synthetic_dir)]) == 1
    assert "expected 'denoiser'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(tmp_path / "empty")]) == 1
    assert "no .png pages" in capsys.readouterr().err


def test_flip_tta_shifts_and_amp_are_the_default_and_can_be_switched_off(tmp_path, synthetic_dir,
                                                                         monkeypatch):
    from src.inference import tiles
    from src.inference.tiles import SHIFTS, predict_page
    from src.models.checkpoints import load_model

    monkeypatch.setattr(tiles, "cpu_bf16", lambda: True)   # bf16 on any CPU: --no-amp must change something

    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    save_checkpoint(path, make_checkpoint(build_model("unet", width=4, depth=1), kind="denoiser",
                                          model_name="unet", model_config=dict(width=4, depth=1), config={}))
    model, _ = load_model(path)
    page_path = list_images(synthetic_dir / "test")[0]
    page = load_page(page_path)
    for flags, tta, shifts, amp in ((), True, len(SHIFTS), True), (("--no-tta",), False, len(SHIFTS), True), \
            (("--shifts", "1"), True, 1, True), (("--no-amp",), True, len(SHIFTS), False):
        out = tmp_path / f"{tta}{shifts}{amp}.csv"
        assert main(["--checkpoint", str(path), "--images", str(page_path.parent), "--out", str(out),
                     "--no-consensus", *flags]) == 0
        got = read_submission(out).set_index("id")["value"]
        want = predict_page(model, page, tta=tta, shifts=shifts, amp=amp)
        for r, c in [(1, 1), (5, 9), (page.shape[0], page.shape[1])]:
            assert got[f"{page_path.stem}_{r}_{c}"] == pytest.approx(want[r - 1, c - 1],
                                                                     abs=6e-5), (flags, r, c)
    amp, fp32 = (read_submission(tmp_path / f"True{len(SHIFTS)}{a}.csv")["value"] for a in (True, False))
    assert np.abs(amp - fp32).max() > 1e-4, "--no-amp made no difference: the test cannot tell them apart"
    plain, flipped = predict_page(model, page), predict_page(model, page, tta=True)
    assert np.abs(plain - flipped).max() > 1e-3, "TTA made no difference: the test cannot tell them apart"
    assert np.abs(plain - predict_page(model, page, shifts=1)).max() > 1e-3, "nor shifts"


@pytest.fixture
def tiny_pages(tmp_path):
    """A folder holding one 20x30 page: a submission in a fraction of a second."""
    import cv2

    folder = tmp_path / "pages"
    folder.mkdir()
    cv2.imwrite(str(folder / "3.png"), np.full((20, 30), 200, np.uint8))
    return folder


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--tile", "0"], "--tile 0: must be at least 1"),
    (["--tile", "16", "--overlap", "16"], "--overlap 16: must be below --tile 16"),
    (["--overlap", "-1"], "--overlap -1: must be at least 0"),
    (["--device", "gpu"], "--device gpu: choose auto, cpu, cuda or cuda:N"),
    (["--out", "a.csv.zip", "--compress", "gz"], "--compress gz contradicts --out a.csv.zip"),
    (["--threads", "-1"], "--threads -1: must be at least 0"),
    (["--shifts", "4"], "argument --shifts: invalid choice: 4 (choose from 0, 1, 2, 3)"),
    (["--sample", "no/samplesubmission.csv"], "--sample no/samplesubmission.csv: no such file"),
])
def test_bad_flags_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as err:
        parse_args(["--checkpoint", "m.pt", *flags])
    assert err.value.code == 2
    assert f"python -m src.make_submission: error: {message}" in capsys.readouterr().err


def test_torchrun_is_refused_before_any_work(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")   # as torchrun --nproc_per_node=2 sets it
    with pytest.raises(SystemExit) as err:
        parse_args(["--checkpoint", "m.pt"])
    assert err.value.code == 2
    assert "WORLD_SIZE=2 (torchrun?): it runs as one process" in capsys.readouterr().err


def test_images_names_skipped_files_and_pages_without_a_number(tmp_path, tiny_pages, identity_ckpt, capsys):
    import shutil
    shutil.copy(tiny_pages / "3.png", tiny_pages / "my scan.png")
    (tiny_pages / "scan.jpg").write_bytes(b"not a png")
    out = tmp_path / "s.csv"
    threads = torch.get_num_threads()
    try:
        assert main(["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages), "--out", str(out),
                     "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)   # the rest of the suite runs on every core
    text = capsys.readouterr().out
    assert f"{tiny_pages}: skipping 1 file other than PNG pages: scan.jpg" in text
    assert "warning: 1 of 2 pages are not named by a page number (my scan.png)" in text
    assert not validate_submission(out).ok   # as the warning says


def test_out_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "m.pt", "--out", str(tmp_path)])
    assert f"--out {tmp_path}: is a folder; name a file such as {tmp_path / 'submission.csv'}" in \
        capsys.readouterr().err


def test_out_with_a_trailing_slash_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "not_yet"
    with pytest.raises(SystemExit) as err:
        parse_args(["--checkpoint", "m.pt", "--out", f"{folder}/"])
    assert err.value.code == 2
    assert (f"--out {folder}/: a trailing slash names a folder; "
            f"name a file such as {folder / 'submission.csv'}") in capsys.readouterr().err
    assert not folder.exists()


def test_sigterm_mid_write_leaves_no_partial_file(tmp_path, tiny_pages, identity_ckpt, monkeypatch, capsys):
    """As Kaggle or `kill` stop it: the temporary CSV goes, exit 143 (SIGTERM's default would leave it)."""
    import os
    import signal

    import src.submission.predict as cmd
    pages = []

    def killed_on_second_page(model, page, **kwargs):
        pages.append(page)
        if len(pages) == 2:                        # the first page's rows are in the temporary file
            os.kill(os.getpid(), signal.SIGTERM)
        return page
    monkeypatch.setattr(cmd, "predict_page", killed_on_second_page)
    (tiny_pages / "4.png").write_bytes((tiny_pages / "3.png").read_bytes())
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "o" / "s.csv"
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages), "--out", str(out)]) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM; no submission written\n"
    assert list((tmp_path / "o").iterdir()) == [] and signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_writes_nothing_and_says_so(tmp_path, tiny_pages, identity_ckpt, monkeypatch, capsys):
    import src.submission.predict as cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "predict_page", interrupted)
    out = tmp_path / "o" / "s.csv"
    args = ["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages), "--out", str(out)]
    assert main(args) == 130
    assert capsys.readouterr().err == "\ninterrupted; no submission written\n"
    assert list((tmp_path / "o").iterdir()) == []                 # no temporary file left either
    out.write_text("an earlier submission")
    assert main(args) == 130
    assert capsys.readouterr().err == f"\ninterrupted; no submission written ({out} is left as it was)\n"
    assert out.read_text() == "an earlier submission"
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["s.csv"]   # and no copy of it in archive/


def test_a_submission_written_again_keeps_the_earlier_one(tmp_path, tiny_pages, identity_ckpt, capsys):
    out = tmp_path / "s.csv"
    args = ["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages), "--out", str(out), "--no-tta"]
    assert main(args) == 0 and not (tmp_path / "archive").exists()
    first = out.read_bytes()
    out.write_bytes(first.replace(b",", b", ", 1))   # an earlier submission, of other bytes
    earlier = out.read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    (kept,) = (tmp_path / "archive").iterdir()
    assert kept.name.startswith("s.") and kept.suffix == ".csv" and kept.read_bytes() == earlier
    assert out.read_bytes() == first and f"the earlier one kept as {kept}" in capsys.readouterr().out


@pytest.mark.parametrize("out, flags, written", [
    ("s.csv.gz", [], "s.csv.gz"), ("s.csv.gz", ["--compress", "gz"], "s.csv.gz"),
    ("s.csv", ["--compress", "zip"], "s.csv.zip"), ("s.csv.zip", [], "s.csv.zip")])
def test_out_name_and_compression_agree(tmp_path, tiny_pages, identity_ckpt, out, flags, written):
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages), "--no-tta",
                 "--out", str(tmp_path / "o" / out), *flags]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == [written]
    magic = (tmp_path / "o" / written).read_bytes()[:2]
    assert magic == (b"\x1f\x8b" if written.endswith(".gz") else b"PK")
    assert read_submission(tmp_path / "o" / written).shape == (600, 2)


def test_unwritable_out_fails_before_any_work(tmp_path, tiny_pages, identity_ckpt, monkeypatch, capsys):
    import src.submission.predict as cmd

    def no_work(*args, **kwargs):
        raise AssertionError("loaded a model or pages for an output that cannot be written")

    monkeypatch.setattr(cmd, "load_model", no_work)
    monkeypatch.setattr(cmd, "list_images", no_work)
    (tmp_path / "file").write_text("a file where the output folder should be")
    assert main(["--checkpoint", str(identity_ckpt), "--images", str(tiny_pages),
                 "--out", str(tmp_path / "file" / "sub" / "s.csv")]) == 1
    assert capsys.readouterr().err == (f"error: cannot write to {tmp_path / 'file' / 'sub'}: "
                                       f"{tmp_path / 'file'} is a file, not a folder\n")


def test_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m src.make_submission ")
    options = text.split("options:")[1].split("\n  -")[1:]
    assert len(options) == 17
    for option in options:
        assert option.count("default") <= 1 and "(default: None)" not in option, option


def test_pages_of_one_text_take_their_median_unless_no_consensus(tmp_path, identity_ckpt, capsys):
    pages = tmp_path / "pages"
    for name, page in (("1", on_background(text_page(1), 1)), ("2", on_background(text_page(1), 2)),
                       ("3", on_background(text_page(2), 3))):
        save_page(pages / f"{name}.png", page)
    runs = {}
    for flag in ("--consensus", "--no-consensus", ""):   # "": the default, off for pages of other sizes
        out = tmp_path / (flag or "default")
        assert main(["--checkpoint", str(identity_ckpt), "--images", str(pages), "--out", str(out / "s.csv"),
                     "--png-dir", str(out), "--no-tta", *[flag][:bool(flag)]]) == 0
        runs[flag] = [load_page(out / f"{n}.png") for n in "123"]
    log = capsys.readouterr().out
    assert "3 pages, 2 of them showing 1 text of 2 pages each" in log and log.count("pages, ") == 1
    inputs = [load_page(pages / f"{n}.png") for n in "123"]
    for flag in ("--no-consensus", ""):
        assert all(np.array_equal(a, b) for a, b in zip(runs[flag], inputs)), flag   # the identity
    one, two, three = runs["--consensus"]
    assert np.array_equal(one, two) and np.array_equal(three, inputs[2])
    assert np.abs(one - (inputs[0] + inputs[1]) / 2).max() <= 1 / 255   # the median of two is their mean


@pytest.mark.parametrize("bias", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("consensus", ["--consensus", "--no-consensus"])
def test_a_model_that_predicts_nan_is_an_error_naming_the_page(tmp_path, tiny_pages, consensus, bias, capsys):
    model = build_model("unet", width=4, depth=1)
    torch.nn.init.constant_(model.head[0].bias, float(bias))   # as a broken checkpoint, or fp16 overflow
    ckpt = tmp_path / "nan.pt"
    save_checkpoint(ckpt, make_checkpoint(model, kind="denoiser", model_name="unet",
                                          model_config=dict(width=4, depth=1), config={}))
    out = tmp_path / "s.csv"
    assert main(["--checkpoint", str(ckpt), "--images", str(tiny_pages), "--out", str(out), consensus]) == 1
    err = capsys.readouterr().err
    assert f"error: {tiny_pages / '3.png'}: the model predicted 600 NaN or inf pixels" in err
    assert not out.exists()


def test_submission_defaults_are_validations():
    """make_submission predicts as validation scored: the same tiles, overlap and flips by default."""
    from src.submission.predict import PredictConfig
    from src.training.config import DenoiserConfig

    for name in ("tile", "overlap", "tta"):
        assert getattr(PredictConfig, name) == getattr(DenoiserConfig, name), name
