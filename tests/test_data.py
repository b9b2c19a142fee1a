import io
import os
from pathlib import Path
import re
import zipfile

from conftest import unreadable_zip
import cv2
import numpy as np
from PIL import Image
import pytest

from src.common.errors import DataError
from src.data.competition import find_pairs, load_pair, prepare_data, safe_extract
from src.data.pages import list_images, load_page, png_size, save_page
from src.data.splits import split_pages, text_groups
from src.data.synthetic import prepare_or_synthesize


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_folders(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        img = rng.integers(0, 256, (20, 30), dtype=np.uint8)
        write_png(root / "train" / f"{i}.png", img)
        write_png(root / "train_cleaned" / f"{i}.png", 255 - img)
    write_png(root / "test" / "10.png", np.zeros((20, 30), np.uint8))
    (root / "sampleSubmission.csv").write_text("id,value\n" + "".join(
        f"10_{r}_{c},1\n" for r in range(1, 21) for c in range(1, 31)))
    return root


def zip_folder(folder: Path, out: Path, arc_root: str | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent if arc_root is None else folder))
    return out


def make_outer_zip(tmp: Path) -> Path:
    """Zips inside a zip, the way `kaggle competitions download` delivers the competition."""
    src = make_folders(tmp / "src")
    inner = tmp / "inner"
    inner.mkdir()
    for name in ("train", "train_cleaned", "test"):
        zip_folder(src / name, inner / f"{name}.zip")
    with zipfile.ZipFile(inner / "sampleSubmission.csv.zip", "w") as zf:
        zf.write(src / "sampleSubmission.csv", "sampleSubmission.csv")
    dest = tmp / "dl"
    dest.mkdir()
    with zipfile.ZipFile(dest / "denoising-dirty-documents.zip", "w") as zf:
        for f in inner.iterdir():
            zf.write(f, f.name)
    return dest


def test_prepare_from_outer_zip_is_idempotent(tmp_path):
    d = make_outer_zip(tmp_path)
    data = prepare_data(d)
    assert len(data.train_pairs) == 3 and len(data.test_images) == 1
    assert data.sample_submission.name == "sampleSubmission.csv" and not data.synthetic
    assert "3 training pairs, 1 test pages, sample submission: 600 rows" in data.summary()
    mtime = (d / "train" / "1.png").stat().st_mtime_ns
    prepare_data(d)
    assert (d / "train" / "1.png").stat().st_mtime_ns == mtime
    assert not list(d.glob(".extract-*"))


def test_read_only_data_dir_is_extracted_under_competition_unpacked(tmp_path, monkeypatch):
    import src.data.competition as data_module
    d = make_outer_zip(tmp_path)
    real_access = os.access
    monkeypatch.setattr(data_module.os, "access", lambda p, mode: Path(p) != d and real_access(p, mode))
    monkeypatch.chdir(tmp_path)      # root writes anywhere: read-only is what os.access answers
    data = prepare_data(d)
    assert [p.name for p in d.iterdir()] == ["denoising-dirty-documents.zip"]     # left as it was
    assert data.root.parent == Path("competition/unpacked") and data.root.name.startswith("dl-")
    assert len(data.train_pairs) == 3 and data.sample_submission.is_file()
    assert prepare_data(d).root == data.root                                     # the same place again


def test_folder_without_write_bits_is_read_only_even_for_root(tmp_path, monkeypatch):
    d = make_outer_zip(tmp_path)
    monkeypatch.chdir(tmp_path)
    d.chmod(0o555)          # what ../shared is; root's os.access would still say writable
    try:
        data = prepare_data(d)
    finally:
        d.chmod(0o755)
    assert [p.name for p in d.iterdir()] == ["denoising-dirty-documents.zip"]
    assert data.root.parent == Path("competition/unpacked")


def test_prepare_from_folders_and_separate_work_dir(tmp_path):
    src = make_folders(tmp_path / "ro")
    data = prepare_data(src, work_dir=tmp_path / "work")
    assert len(data.train_pairs) == 3 and data.root == src


def test_prepare_from_inner_zips_into_work_dir(tmp_path):
    outer = make_outer_zip(tmp_path)
    ro = tmp_path / "mount"
    safe_extract(outer / "denoising-dirty-documents.zip", ro)
    data = prepare_data(ro, work_dir=tmp_path / "working")
    assert (tmp_path / "working" / "train").is_dir() and len(data.train_pairs) == 3


def test_pairs_sorted_numerically(tmp_path):
    for i in (10, 2, 1):
        write_png(tmp_path / "a" / f"{i}.png", np.zeros((2, 2), np.uint8))
        write_png(tmp_path / "b" / f"{i}.png", np.zeros((2, 2), np.uint8))
    assert [n.stem for n, _ in find_pairs(tmp_path / "a", tmp_path / "b")] == ["1", "2", "10"]


def test_missing_partners_named(tmp_path):
    root = make_folders(tmp_path / "d")
    (root / "train_cleaned" / "2.png").unlink()
    with pytest.raises(DataError, match=r"train/2\.png: noisy page has no clean partner"):
        prepare_data(root)
    write_png(root / "train_cleaned" / "2.png", np.zeros((20, 30), np.uint8))
    (root / "train" / "3.png").unlink()
    with pytest.raises(DataError, match=r"train_cleaned/3\.png: clean page has no noisy partner"):
        prepare_data(root)


def test_size_mismatch_and_truncated_png(tmp_path, capfd):
    a = write_png(tmp_path / "a.png", np.zeros((20, 30), np.uint8))
    b = write_png(tmp_path / "b.png", np.zeros((21, 30), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: size 30x20 differs .*b\.png \(30x21\)"):
        load_pair(a, b)
    data = a.read_bytes()
    bad = tmp_path / "trunc.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"trunc\.png: not a readable image \(truncated PNG"):
        load_page(bad)
    assert capfd.readouterr().err == ""   # libpng's own line on fd 2 would come before ours
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match=r"text\.png: not a readable image"):
        load_page(tmp_path / "text.png")
    with pytest.raises(DataError, match="file not found"):
        load_page(tmp_path / "nope.png")


def test_bytes_after_a_pngs_end_and_unreadable_files(tmp_path, monkeypatch):
    img = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    p = write_png(tmp_path / "a.png", img)
    p.write_bytes(p.read_bytes() + bytes(100))   # some tools append bytes past IEND; readers ignore them
    assert np.array_equal(load_page(p), img / np.float32(255))

    def refused(*args, **kwargs):   # chmod 000 stops no one when the tests run as root
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(np, "fromfile", refused)
    with pytest.raises(DataError, match=r"a\.png: cannot read it \(Permission denied\)"):
        load_page(p)


def test_save_page_round_trips_through_load_page(tmp_path):
    page = np.array([[-0.2, 0.0, 0.3337], [0.5, 1.0, 1.7]], np.float32)
    save_page(tmp_path / "p.png", page)
    back = load_page(tmp_path / "p.png")
    assert np.abs(back - np.clip(page, 0, 1)).max() <= 1 / 510 + 1e-6 and back[0, 0] == 0 and back[1, 2] == 1
    ints = np.arange(256, dtype=np.uint8).reshape(16, 16)
    save_page(tmp_path / "p.png", ints)   # replaces the file; uint8 is written as it is
    assert np.array_equal(np.rint(load_page(tmp_path / "p.png") * 255), ints)
    black_and_white = ints > 100
    for dpi in (None, (300, 300)):   # OpenCV's writer, and Pillow's where a resolution is recorded
        save_page(tmp_path / "p.png", black_and_white, dpi)
        with Image.open(tmp_path / "p.png") as img:
            assert img.mode == "1"   # one bit a pixel
        assert np.array_equal(load_page(tmp_path / "p.png"), black_and_white)
    with pytest.raises(DataError, match=r"q\.png: a page is \(height, width\) grayscale, not shape"):
        save_page(tmp_path / "q.png", np.zeros((2, 2, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_colour_page_converted_with_warning(tmp_path, caplog):
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 1] = 255
    p = write_png(tmp_path / "c.png", img)
    page = load_page(p)
    assert page.shape == (4, 5) and page.dtype == np.float32 and 0.5 < page.max() <= 1
    assert "colour image" in caplog.text


def test_empty_folder(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="no .png pages"):
        list_images(tmp_path / "e")
    with pytest.raises(DataError, match="no competition data found"):
        prepare_data(tmp_path / "e")
    save_page(tmp_path / "e" / "test" / "1.png", np.ones((4, 5)))   # the test pages alone
    (tmp_path / "e" / "sampleSubmission.csv").write_text("id,value\n")
    with pytest.raises(DataError, match=re.escape(
            f"alone are cleaned by python -m src.make_submission --images {tmp_path / 'e' / 'test'} --sample "
            f"{tmp_path / 'e' / 'sampleSubmission.csv'}.")):
        prepare_data(tmp_path / "e")


def test_data_one_folder_down_is_pointed_at(tmp_path, synthetic_dir):
    """The zip unpacked by double-click: its folder, not the one named, holds the data."""
    import shutil

    shutil.copytree(synthetic_dir, tmp_path / "x" / "denoising-dirty-documents")
    with pytest.raises(DataError, match=r"found .* \S+denoising-dirty-documents holds it: pass --data-dir "
                                        r"\S+x/denoising-dirty-documents\."):
        prepare_data(tmp_path / "x")
    assert len(prepare_data(tmp_path / "x" / "denoising-dirty-documents").train_pairs) == 6


def test_zip_slip_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train/1.png", b"x")
        zf.writestr("../evil.png", b"x")
    dest = tmp_path / "out"
    with pytest.raises(DataError, match=r"'\.\./evil\.png' would be written outside"):
        safe_extract(z, dest)
    assert not (tmp_path / "evil.png").exists() and not (dest / "train").exists()


def test_corrupt_zip(tmp_path):
    d = make_outer_zip(tmp_path)
    z = d / "denoising-dirty-documents.zip"
    z.write_bytes(z.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"corrupt or truncated zip .*; download it again \(python -m "
                                        rf"src.download --force --data-dir {re.escape(str(d))}\)"):
        prepare_data(d)


@pytest.mark.parametrize("kind, says", [("deflate64", "compression method"), ("encrypted", "encrypted")])
def test_zip_python_cannot_read_is_named(tmp_path, kind, says):
    z = unreadable_zip(tmp_path / "train.zip", kind)
    with pytest.raises(DataError, match=rf"train\.zip: a zip Python cannot read \(.*{says}.*\); download"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "train").exists()


def test_extraction_target_under_a_file_is_a_data_error(tmp_path):
    d = make_outer_zip(tmp_path)
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(DataError, match=r"cannot extract into .*blocker/unpacked"):
        prepare_data(d, work_dir=tmp_path / "blocker" / "unpacked")


def test_rezipped_folder_is_named_before_extracting(tmp_path):
    """A folder zipped again (macOS Compress, Windows Send to) holds the inner zips one level down."""
    d = make_outer_zip(tmp_path)
    outer = zipfile.ZipFile(d / "denoising-dirty-documents.zip")
    again = tmp_path / "again"
    again.mkdir()
    with zipfile.ZipFile(again / "data.ZIP", "w") as zf:   # and an upper-case suffix
        for n in outer.namelist():
            zf.writestr(f"denoising-dirty-documents/{n}", outer.read(n))
    with pytest.raises(DataError, match=r"data\.ZIP: holds 'train\.zip' or 'train' in a folder "
                                        r"\(denoising-dirty-documents/train\.zip\), not at its top"):
        prepare_data(again)
    assert sorted(p.name for p in again.iterdir()) == ["data.ZIP"]   # nothing extracted


def test_competition_zip_of_folders_prepares(tmp_path):
    """The competition's name on a zip of the extracted folders, not of the inner zips."""
    src = make_folders(tmp_path / "src")
    (tmp_path / "dl").mkdir()
    zip_folder(src, tmp_path / "dl" / "denoising-dirty-documents.zip", arc_root="")
    data = prepare_data(tmp_path / "dl")
    assert len(data.train_pairs) == 3 and len(data.test_images) == 1 and data.sample_submission is not None


def test_upper_case_zip_and_unreadable_zips_beside_the_data(tmp_path, caplog):
    d = make_outer_zip(tmp_path)
    (d / "denoising-dirty-documents.zip").rename(d / "renamed.ZIP")   # looked at after the junk
    (d / "notes.zip").write_bytes(b"not a zip")
    unreadable_zip(d / "old.zip", "deflate64")
    data = prepare_data(d)
    assert len(data.train_pairs) == 3 and len(data.test_images) == 1
    assert "notes.zip: not a readable zip" in caplog.text and "old.zip" not in caplog.text   # its list reads
    (d / "renamed.ZIP").unlink()   # folders extracted; a junk zip beside them is no reason to fail
    assert len(prepare_data(d).train_pairs) == 3


def test_a_killed_extractions_folder_is_removed_later(tmp_path):
    d = make_outer_zip(tmp_path)
    old, recent = (d / ".extract-killed"), (d / ".extract-running")
    for folder in (old, recent):
        (folder / "train").mkdir(parents=True)
    os.utime(old, (0, 0))
    prepare_data(d)
    assert not old.exists() and recent.exists()


def test_split_pages_reproducible_and_folds_partition():
    tr, va = split_pages(20, 0.2, seed=3)
    assert (tr, va) == split_pages(20, 0.2, seed=3) and len(va) == 4 and not set(tr) & set(va)
    assert split_pages(20, 0.2, seed=4)[1] != va
    vals = [split_pages(10, folds=3, fold=k)[1] for k in range(3)]
    assert sorted(sum(vals, [])) == list(range(10))
    assert split_pages(5, 0.0)[1] == []
    with pytest.raises(ValueError):
        split_pages(5, folds=3, fold=3)
    with pytest.raises(ValueError, match="--folds 6: more than the 5 pages"):   # fold 5 would hold out none
        split_pages(5, folds=6, fold=5)
    with pytest.raises(ValueError, match=r"--folds 3: more than the 2 texts \(--split-by text\)"):
        split_pages(4, folds=3, groups=[0, 0, 1, 1])
    assert split_pages(5, folds=5, fold=4)[1]


def test_split_by_page_holds_out_the_pages_it_always_has():
    # checkpoints store split_seed, not the pages: bench_ensemble re-derives them, so they must not move
    assert split_pages(20, 0.2, seed=3)[1] == [8, 12, 16, 18]
    assert split_pages(10, folds=3, fold=1)[1] == [0, 3, 6]
    assert split_pages(20, 0.2, seed=3, groups=list(range(20))) == split_pages(20, 0.2, seed=3)


def test_text_groups_join_identical_clean_pages_only():
    a, b = np.zeros((4, 6), np.float32), np.ones((4, 6), np.float32)
    assert text_groups([a, b, a.copy(), b[:, :5], np.zeros((6, 4), np.float32)]) == [0, 1, 0, 2, 3]


def test_split_by_group_keeps_each_group_on_one_side():
    groups = [k // 3 for k in range(30)]   # 10 texts of 3 pages
    for seed in range(5):
        train, val = split_pages(30, 0.15, seed=seed, groups=groups)
        assert not {groups[i] for i in train} & {groups[i] for i in val}
        assert len(val) == 6 and sorted(train + val) == list(range(30))   # whole groups up to >= 4.5 pages
    folds = [split_pages(30, folds=4, fold=k, groups=groups)[1] for k in range(4)]
    assert sorted(sum(folds, [])) == list(range(30))
    assert all(len({groups[i] for i in f}) * 3 == len(f) for f in folds)
    with pytest.raises(ValueError, match="no training pages"):
        split_pages(6, 0.5, groups=[0] * 6)
    with pytest.raises(ValueError, match="5 group numbers for 6 pages"):
        split_pages(6, 0.5, groups=[0] * 5)
    labels = [f"text {g * 7}" for g in groups]   # any labels: the groups are what counts
    assert split_pages(30, 0.15, seed=1, groups=labels) == split_pages(30, 0.15, seed=1, groups=groups)


def test_default_folder_falls_back_to_synthetic_only_when_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "competition").mkdir()
    msgs = []
    data = prepare_or_synthesize(Path("competition"), log=msgs.append)
    assert data.synthetic and "SYNTHETIC" in msgs[0] and len(data.train_pairs) > 0
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError):
        prepare_or_synthesize(Path("mine"))


@pytest.mark.shared
def test_real_zip_prepares(tmp_path, real_zip):
    (tmp_path / real_zip.name).symlink_to(real_zip)
    data = prepare_data(tmp_path)
    with zipfile.ZipFile(real_zip) as outer:
        with zipfile.ZipFile(io.BytesIO(outer.read("train.zip"))) as inner:
            n_train = sum(n.endswith(".png") for n in inner.namelist())
    assert len(data.train_pairs) == n_train and len(data.test_images) == 72
    x, y = load_pair(*data.train_pairs[0])
    assert x.shape == y.shape and x.shape[1] == 540


def test_file_given_where_a_folder_is_expected_names_the_folder(tmp_path):
    z = tmp_path / "comp" / "denoising-dirty-documents.zip"
    z.parent.mkdir()
    z.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(DataError) as err:
        prepare_data(z)
    assert str(err.value) == (f"{z}: is a file; --data-dir takes the folder that holds the competition zip "
                              f"(here: {tmp_path / 'comp'})")
    page = write_png(tmp_path / "pages" / "1.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"1\.png: is a file; pass the folder that holds the \.png pages "
                                        r"\(here: .*pages\)"):
        list_images(page)


def test_png_size_reads_the_header_only(tmp_path):
    save_page(tmp_path / "a", np.zeros((258, 540), np.uint8))
    (tmp_path / "b").write_bytes(b"not a png at all, but long enough")
    (tmp_path / "c").write_bytes(b"")
    (tmp_path / "d").write_bytes((tmp_path / "a").read_bytes()[:20])   # cut inside the header
    assert [png_size(tmp_path / n) for n in "abcd"] == [(258, 540), None, None, None]


def test_page_names_that_are_not_ascii_numbers_sort_after_the_numbers(tmp_path):
    for name in ("10", "2", "²", "a"):   # "²".isdigit() holds, int("²") fails
        write_png(tmp_path / f"{name}.png", np.zeros((2, 2), np.uint8))
    assert [p.stem for p in list_images(tmp_path)] == ["2", "10", "a", "²"]
    for name in ("20", "020"):   # one number: ties go by file name, not by the order the disk lists them
        write_png(tmp_path / f"{name}.png", np.zeros((2, 2), np.uint8))
    assert [p.stem for p in list_images(tmp_path)] == ["2", "10", "020", "20", "a", "²"]


def test_hidden_files_are_not_pages_and_one_id_twice_is_refused(tmp_path):
    write_png(tmp_path / "1.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "._1.png").write_bytes(b"\0\5\26\7 AppleDouble")   # macOS's resource fork of 1.png
    assert [p.name for p in list_images(tmp_path)] == ["1.png"]
    for name in ("strasse", "straße"):   # two ids, two files everywhere (casefold() makes them one)
        write_png(tmp_path / f"{name}.png", np.zeros((2, 2), np.uint8))
    assert len(list_images(tmp_path)) == 3
    write_png(tmp_path / "1.PNG", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=r": 1\.PNG and 1\.png are one page id; rename or remove one"):
        list_images(tmp_path)
