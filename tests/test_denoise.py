"""python -m src.denoise and the scans it reads (src/data/scans.py): every format, names, safety."""
import hashlib
import json
import re
import shutil

import cv2
import numpy as np
from PIL import Image
import pypdfium2 as pdfium
import pytest
import torch

from src.common.errors import DataError
from src.data.ledger import Ledger
from src.data.pages import load_page, save_page
from src.data.scans import (DEFAULT_DPI, MAX_DPI, Page, Scan, check_outputs, find_scans, open_scan,
                            read_pages, read_written, write_pdf)
from src.data.synthetic import make_pair
from src.denoise import main
from src.inference.finish import black_and_white, finish, skew_angle, upright
from src.inference.scale import text_size
from src.inference.tiles import TILE, WHOLE, tile_for
from src.models.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from src.models.registry import build_model
from tests.conftest import identity_checkpoint


def page(seed: int = 0, height: int = 258) -> np.ndarray:
    """A noisy synthetic page with text: uint8 (height, 540)."""
    return make_pair(seed, 1, height)[0]


def read(path, dpi: int = 200) -> list[np.ndarray]:
    """The file's pages; DataError for the first that cannot be read."""
    pages = list(read_pages(open_scan(path), dpi))
    for got in pages:
        if got.problem:
            raise DataError(got.problem)
    return [got.pixels for got in pages]


def digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def random_ckpt(tmp_path):
    """A tiny random U-Net, as `make demo` would leave it but untrained, recording no text size."""
    path = tmp_path / "random.pt"
    save_checkpoint(path, make_checkpoint(build_model("unet", width=4, depth=1), kind="denoiser",
                                          model_name="unet", model_config=dict(width=4, depth=1), config={}))
    return path


# ---------------------------------------------------------------- reading scans

@pytest.mark.parametrize("suffix, options", [(".png", {}), (".bmp", {}), (".webp", {"lossless": True}),
                                             (".tif", {}), (".jpg", {"quality": 100}),
                                             (".avif", {"quality": 100}), (".heic", {"quality": -1})])
def test_each_format_reads_as_a_float_page(tmp_path, suffix, options):
    import pillow_heif

    img = page()
    # HEIC by pillow-heif's own writer: Pillow is not told of it here, which the reading must do itself
    writer = pillow_heif.from_pillow(Image.fromarray(img)) if suffix == ".heic" else Image.fromarray(img)
    writer.save(tmp_path / f"scan{suffix}", **options)   # HEIC quality -1: lossless
    (got,) = read(tmp_path / f"scan{suffix}")
    assert got.dtype == np.float32 and got.shape == img.shape
    tolerance = 2 / 255 if suffix in (".jpg", ".avif") else 1e-6
    assert np.abs(got - img / 255).mean() <= tolerance


def test_colour_is_made_gray_by_luma(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    (got,) = read(tmp_path / "c.png")
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[0, 0] / 255   # ITU-R 601, as load_page
    assert got.shape == (20, 30) and np.allclose(got, expected, atol=1 / 255)


def test_sixteen_bit_and_palette_images_keep_their_gray_levels(tmp_path):
    wide = (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    cv2.imwrite(str(tmp_path / "wide.tif"), wide)
    for name in ("wide.png", "wide.tif"):
        (got,) = read(tmp_path / name)
        np.testing.assert_allclose(got, wide / 65535, atol=1e-6)
    gray = page()
    Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(tmp_path / "p.png")
    (got,) = read(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P" and np.abs(got - gray / 255).mean() < 0.02


def test_transparent_paper_is_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)   # transparent black, as many programs store empty paper
    rgba[2:4, 2:4] = (0, 0, 0, 255)          # one opaque black square: the ink
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    (got,) = read(tmp_path / "t.png")
    assert got[0, 0] == 1 and got[2, 2] == 0


def test_exif_rotation_is_applied(tmp_path):
    img = np.full((20, 40), 255, np.uint8)
    img[:, :5] = 0   # a dark left edge
    exif = Image.Exif()
    exif[0x0112] = 6   # shown turned 90 degrees clockwise
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=100)
    (got,) = read(tmp_path / "r.jpg")
    assert got.shape == (40, 20)
    np.testing.assert_allclose(got, np.rot90(img, -1) / 255, atol=0.1)   # the dark edge now on top


def test_every_page_of_a_tiff_and_names_after_the_source(tmp_path):
    frames = [Image.fromarray(page(k, h)) for k, h in enumerate((258, 420, 258))]
    frames[0].save(tmp_path / "letter.tif", save_all=True, append_images=frames[1:])
    scan = open_scan(tmp_path / "letter.tif")
    assert scan == Scan(tmp_path / "letter.tif", 3, False)
    assert scan.page_names() == ["letter-1.png", "letter-2.png", "letter-3.png"]
    assert [p.pixels.shape for p in read_pages(scan)] == [(258, 540), (420, 540), (258, 540)]
    assert Scan(tmp_path / "scan.jpg", 1, False).output_names() == ["scan.png"]
    assert Scan(tmp_path / "a.pdf", 1, True).output_names() == ["a-1.png", "a.pdf"]


def test_pdf_pages_render_at_the_resolution_asked_and_a_cleaned_pdf_is_lossless(tmp_path):
    pages = [page(0), page(1, 420)]
    Image.fromarray(pages[0]).save(tmp_path / "in.pdf", save_all=True, resolution=72,
                                   append_images=[Image.fromarray(pages[1])])
    scan = open_scan(tmp_path / "in.pdf")
    assert scan.pages == 2 and scan.pdf
    assert [p.pixels.shape for p in read_pages(scan, 144)] == [(516, 1080), (840, 1080)]   # 72 dpi, at 144
    write_pdf(tmp_path / "out.pdf", [Page(pages[0], (100, 100)), Page(pages[1], (100, 100))])
    pdf = pdfium.PdfDocument(tmp_path / "out.pdf")
    try:
        sizes = [tuple(round(v) for v in sheet.get_size()) for sheet in pdf]
        images = [next(sheet.get_objects()) for sheet in pdf]
        kept = [np.frombuffer(bytes(i.get_data(decode_simple=True)), np.uint8) for i in images]
        filters = [i.get_filters() for i in images]
    finally:
        pdf.close()
    assert sizes == [(389, 186), (389, 302)]   # 540 px at 100 dpi: 389 pt
    assert filters == [["FlateDecode"]] * 2   # lossless, not JPEG's DCTDecode
    for img, back in zip(pages, kept):
        np.testing.assert_array_equal(back.reshape(img.shape), img)
    rendered = read(tmp_path / "out.pdf", 100)
    assert [abs(a.shape[0] - b.shape[0]) <= 1 for a, b in zip(rendered, pages)] == [True, True]


def test_a_written_pages_resolution_reads_back_whole(tmp_path):
    for dpi in (72, 96, 150, 200, 300, 600):   # a PNG keeps whole dots a metre: 150 dpi is stored as 150.0124
        save_page(tmp_path / "p.png", np.zeros((2, 2), np.uint8), (dpi, dpi))
        assert read_written(tmp_path / "p.png").dpi == (dpi, dpi)


def test_a_scanned_pdf_page_is_read_at_its_scans_resolution_and_written_at_its_size(tmp_path, random_ckpt):
    scanned = page(0)
    Image.fromarray(scanned).save(tmp_path / "scan.pdf", resolution=300)   # one image filling the page
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(612, 792)   # text and drawings: no image, no resolution of its own
    pdf.save(tmp_path / "typed.pdf")
    pdf.close()
    (got,) = read_pages(open_scan(tmp_path / "scan.pdf"))
    assert got.pixels.shape == scanned.shape and got.dpi == (300, 300)   # not resampled to 200 dpi
    (typed,) = read_pages(open_scan(tmp_path / "typed.pdf"))
    assert typed.dpi == (DEFAULT_DPI, DEFAULT_DPI)
    assert typed.pixels.shape == (11 * DEFAULT_DPI, 8.5 * DEFAULT_DPI)   # US letter
    Image.fromarray(page(1)).save(tmp_path / "fine.pdf", resolution=2400)
    assert next(read_pages(open_scan(tmp_path / "fine.pdf"))).dpi == (MAX_DPI, MAX_DPI)
    out = tmp_path / "out"
    assert main([str(tmp_path / "scan.pdf"), "--out", str(out), "--checkpoint", str(random_ckpt)]) == 0
    cleaned, source = pdfium.PdfDocument(out / "scan.pdf"), pdfium.PdfDocument(tmp_path / "scan.pdf")
    assert cleaned[0].get_size() == pytest.approx(source[0].get_size(), abs=0.01)   # the paper's size
    cleaned.close()
    source.close()
    assert read(out / "scan.pdf", 300)[0].shape == scanned.shape


def test_a_poster_sized_pdf_page_is_refused_with_the_dpi_that_renders_it_and_the_next_read(tmp_path):
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(14400, 14400)   # 200 x 200 inches
    pdf.new_page(612, 792)       # US letter
    pdf.save(tmp_path / "poster.pdf")
    pdf.close()
    first, second = read_pages(open_scan(tmp_path / "poster.pdf"), 200)
    assert first.pixels is None and first.problem == (
        f"{tmp_path / 'poster.pdf'}: page 1 would be 40000 x 40000 px at --dpi 200, too large to clean "
        f"safely; --dpi 66 or lower renders it")
    assert second.pixels.shape == (2200, 1700) and second.dpi == (200, 200)
    assert next(read_pages(open_scan(tmp_path / "poster.pdf"), 18)).pixels.shape == (3600, 3600)


def test_unreadable_files_raise_data_errors_naming_them(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 nothing else")
    for name in ("junk.png", "text.jpg", "bad.pdf"):
        with pytest.raises(DataError, match=re.escape(str(tmp_path / name))):
            open_scan(tmp_path / name)
    Image.fromarray(page()).save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])   # a header, half the picture
    with pytest.raises(DataError, match="cut.jpg: not a readable image"):
        read(tmp_path / "cut.jpg")


def test_find_scans_lists_folders_in_page_order_and_names_what_is_missing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("10.png", "2.jpg", ".hidden.png", "notes.txt", "a.PDF"):
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    (tmp_path / "empty").mkdir()
    files, skipped, notes = find_scans([folder, folder / "2.jpg", tmp_path / "gone.png", tmp_path / "empty"])
    assert [p.name for p in files] == ["2.jpg", "10.png", "a.PDF"]   # 2.jpg named twice: once
    assert [p.name for p, _ in skipped] == ["gone.png", "empty"]
    assert "no such file" in skipped[0][1] and "no PNG, JPEG" in skipped[1][1]
    assert notes == [f"{folder}: left out 1 file of other kinds (notes.txt), 1 subfolder (sub)"]


def test_check_outputs_refuses_collisions_and_overwriting_an_input(tmp_path):
    jpg, png = Scan(tmp_path / "scan.jpg", 1, False), Scan(tmp_path / "scan.png", 1, False)
    with pytest.raises(DataError, match="would both be cleaned to"):
        check_outputs([jpg, png], tmp_path / "out")
    with pytest.raises(DataError, match="one file on a disk blind to case"):
        check_outputs([jpg, Scan(tmp_path / "Scan.tif", 1, False)], tmp_path / "out")
    png.path.write_bytes(b"")
    with pytest.raises(DataError, match="is an input"):
        check_outputs([png], tmp_path)
    check_outputs([jpg, Scan(tmp_path / "scan.pdf", 2, True)], tmp_path / "out")   # scan.png, scan-1.png, ...
    out = tmp_path / "out"
    out.mkdir()
    for name in ("scan.png", "a.png", "b.png", "c.png", "d.png"):
        (out / name).write_bytes(b"")
    others = [Scan(tmp_path / n, 1, False) for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    with pytest.raises(DataError, match=re.escape(
            f"would replace 5 files this command did not write (its record, denoise.jsonl there, does not "
            f"list them): {out / 'a.png'}, {out / 'b.png'}, {out / 'c.png'} and 2 more")):
        check_outputs([*others, jpg], out)
    ours = {n: str(tmp_path / n.replace("png", "jpg")) for n in ("a.png", "b.png", "c.png", "d.png")}
    check_outputs(others, out, written=ours)   # each cleaned from the same source before
    with pytest.raises(DataError, match=re.escape(f"{out / 'scan.png'} was cleaned from {tmp_path / 'mon'}")):
        check_outputs([jpg], out, written={"scan.png": str(tmp_path / "mon")})   # another scan of that name
    check_outputs([jpg], out, written={"scan.png": None})   # claimed, its record cut short: the command's


# ---------------------------------------------------------------- the command

def test_one_call_cleans_every_format_and_skips_a_corrupt_file(tmp_path, random_ckpt, capsys):
    src, out = tmp_path / "scans", tmp_path / "cleaned"
    src.mkdir()
    gray = page(1, 420)
    Image.fromarray(np.stack([gray, gray, np.full_like(gray, 180)], -1)).save(src / "colour.jpg")
    frames = [Image.fromarray(page(k)) for k in range(3)]
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    Image.fromarray(page(4)).save(src / "letter.pdf", save_all=True,
                                  append_images=[Image.fromarray(page(5))])
    big = np.clip(cv2.resize(gray / 255, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC), 0, 1)
    Image.fromarray(np.rint(big * 255).astype(np.uint8)).save(src / "big.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    before = digest(src)
    assert main([str(src), "--out", str(out), "--checkpoint", str(random_ckpt), "--no-tta"]) == 3
    log = capsys.readouterr()
    text = log.out + log.err
    assert sorted(p.name for p in out.iterdir()) == [
        "big.png", "colour.png", "denoise.jsonl", "letter-1.png", "letter-2.png", "letter.pdf", "pages-1.png",
        "pages-2.png", "pages-3.png"]
    assert digest(src) == before   # inputs untouched
    assert f"skipped {src / 'corrupt.png'}" in log.err and "corrupt.png" in log.out.splitlines()[-1]
    assert re.search(rf"cleaned 7 pages of 4 files in [\d.]+ s -> {re.escape(str(out))}; skipped 1", log.out)
    assert "record no text size: the competition's (12.4 px)" in text
    size = float(re.search(r"big.png -> big.png: text ([\d.]+) px", text).group(1))
    assert size == pytest.approx(2.5 * text_size(gray / 255), rel=0.1)   # its scale recovered
    assert load_page(out / "big.png").shape == big.shape and load_page(out / "colour.png").shape == (420, 540)
    assert open_scan(out / "letter.pdf").pages == 2


def test_a_stopped_run_goes_on_where_it_stopped_and_redoes_what_changed(tmp_path, random_ckpt, capsys,
                                                                        monkeypatch):
    import src.inference.folder as command

    src, out, fresh = tmp_path / "scans", tmp_path / "cleaned", tmp_path / "fresh"
    src.mkdir()
    for k in range(2):
        Image.fromarray(page(k)).save(src / f"scan{k}.png")
    Image.fromarray(page(4)).save(src / "letter.pdf", save_all=True,
                                  append_images=[Image.fromarray(page(5))])
    args = ["--checkpoint", str(random_ckpt), "--no-tta"]
    assert main([str(src), "--out", str(fresh), *args]) == 0
    saved = []

    def save_two_then_stop(path, cleaned, dpi=None):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(path.name)
        save_page(path, cleaned, dpi)

    monkeypatch.setattr(command, "save_page", save_two_then_stop)
    assert main([str(src), "--out", str(out), *args]) == 130
    assert "the same command goes on from there" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([str(src), "--out", str(out), *args]) == 0
    assert "cleaned 2 pages of 3 files" in capsys.readouterr().out   # the two it had not reached
    pdf, record = "letter.pdf", "denoise.jsonl"   # the PDF's bytes hold the time it was written
    assert {**digest(out), pdf: 0, record: 0} == {**digest(fresh), pdf: 0, record: 0}   # as if never stopped
    assert Ledger(out, {}).pages == Ledger(fresh, {}).pages   # the record too
    assert all(np.array_equal(a, b) for a, b in zip(read(out / pdf), read(fresh / pdf), strict=True))
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main([str(src), "--out", str(out), *args]) == 0
    assert "cleaned 0 pages of 3 files" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == times   # nothing written, record neither
    Image.fromarray(page(7)).save(src / "scan1.png")   # a source changed
    (out / "letter-2.png").unlink()                     # a cleaned page deleted
    assert main([str(src), "--out", str(out), *args]) == 0
    log = capsys.readouterr().out
    assert "cleaned 2 pages of 3 files" in log and "-> scan1.png" in log and "-> letter-2.png" in log
    names = [json.loads(line)["page"] for line in (out / record).read_text().splitlines()]
    assert len(names) == 5 + 3 and len(set(names)) == 5   # one line a page, then the 2 pages and PDF redone
    assert main([str(src), "--out", str(out), *args[:2]]) == 0   # with flip TTA: a different result
    assert "cleaned 4 pages of 3 files" in capsys.readouterr().out
    (out / record).write_text("{not json\n")   # then no page there is known to be the command's
    before = digest(out)
    assert main([str(src), "--out", str(out), *args[:2]]) == 1
    assert f"{out / record}: unreadable (line 1 is not a page's record)" in capsys.readouterr().err
    assert digest(out) == before


def test_a_page_written_but_not_recorded_is_still_the_commands(tmp_path, random_ckpt, capsys):
    """A page written whose record line was cut short (or never written) is cleaned again, not refused
    as the user's own file; the cut line is dropped."""
    Image.fromarray(page(0)).save(tmp_path / "scan.png")
    out, args = tmp_path / "cleaned", ["--checkpoint", str(random_ckpt), "--no-tta"]
    assert main([str(tmp_path / "scan.png"), "--out", str(out), *args]) == 0
    record = out / "denoise.jsonl"
    claim, done = record.read_text().splitlines()
    assert json.loads(claim) == {"page": "scan.png"} and json.loads(done)["source"][0].endswith("scan.png")
    record.write_text(claim + "\n" + done[:len(done) // 2])   # stopped while appending the second line
    assert main([str(tmp_path / "scan.png"), "--out", str(out), *args]) == 0
    assert "cleaned 1 page of 1 file" in capsys.readouterr().out
    assert record.read_text().splitlines() == [claim, done]   # the cut line gone, the page recorded again


def test_cleaned_pages_keep_the_resolution_their_scan_records(tmp_path, random_ckpt):
    src, out = tmp_path / "scans", tmp_path / "cleaned"
    src.mkdir()
    Image.fromarray(page(0)).save(src / "a.jpg", dpi=(300, 300))
    Image.fromarray(page(1)).save(src / "wide.tif", dpi=(300, 150))
    turned = Image.fromarray(page(2))
    exif = turned.getexif()
    exif[0x0112] = 6   # to be turned a quarter: its x and y resolutions trade places
    turned.save(src / "turned.jpg", dpi=(300, 150), exif=exif)
    Image.fromarray(page(3)).save(src / "plain.png")   # none recorded: none made up
    Image.fromarray(page(4)).save(src / "doc.pdf")
    assert next(read_pages(open_scan(src / "turned.jpg"))).dpi == pytest.approx((150, 300))
    assert main([str(src), "--out", str(out), "--checkpoint", str(random_ckpt), "--no-tta", "--dpi", "144"]) \
        == 0

    def dpi(name):
        with Image.open(out / name) as img:
            return img.info.get("dpi")

    assert dpi("a.png") == pytest.approx((300, 300), abs=0.01)
    assert dpi("wide.png") == pytest.approx((300, 150), abs=0.02)   # whole dots a metre
    assert dpi("turned.png") == pytest.approx((150, 300), abs=0.02)
    assert dpi("plain.png") is None
    assert dpi("doc-1.png") == pytest.approx((144, 144), abs=0.01)   # rendered at --dpi
    assert load_page(out / "a.png").shape == page(0).shape


def test_a_file_in_out_that_denoise_did_not_write_is_never_replaced(tmp_path, random_ckpt, capsys):
    Image.fromarray(page(0)).save(tmp_path / "scan.jpg")
    Image.fromarray(page(1)).save(tmp_path / "scan.png")   # the user's own, not named on the command line
    before = digest(tmp_path)
    assert main([str(tmp_path / "scan.jpg"), "--out", str(tmp_path), "--checkpoint", str(random_ckpt)]) == 1
    err = capsys.readouterr().err
    assert (f"would replace 1 file this command did not write (its record, denoise.jsonl there, does not "
            f"list them): {tmp_path / 'scan.png'}") in err
    assert digest(tmp_path) == before


def test_out_among_the_inputs_is_not_read_back_as_scans(tmp_path, random_ckpt, capsys):
    Image.fromarray(page(0)).save(tmp_path / "a.jpg")
    args = [str(tmp_path), "--out", str(tmp_path), "--checkpoint", str(random_ckpt), "--no-tta"]
    assert main(args) == 0 and "cleaned 1 page of 1 file" in capsys.readouterr().out
    assert main(args) == 0   # a.png, its own page, is neither a scan nor in the way
    assert "cleaned 0 pages of 1 file" in capsys.readouterr().out


def test_a_folder_cleaned_into_before_gives_only_its_scans_and_a_note(tmp_path, random_ckpt, capsys):
    Image.fromarray(page(0)).save(tmp_path / "a.jpg")
    args = ["--checkpoint", str(random_ckpt), "--no-tta"]
    assert main([str(tmp_path), "--out", str(tmp_path), *args]) == 0   # a.png beside a.jpg
    capsys.readouterr()
    assert main([str(tmp_path), "--out", str(tmp_path / "elsewhere"), *args]) == 0   # a.png is no scan
    out = capsys.readouterr().out
    assert f"{tmp_path}: left out 1 file of other kinds (random.pt), 1 file cleaned into it before " \
           f"(denoise.jsonl there)" in out and "cleaned 1 page of 1 file" in out


def test_a_page_cleaned_from_another_scan_of_that_name_is_not_replaced(tmp_path, random_ckpt, capsys):
    for day, k in (("mon", 0), ("tue", 1)):
        (tmp_path / day).mkdir()
        Image.fromarray(page(k)).save(tmp_path / day / "scan_0001.png")
    out, args = tmp_path / "cleaned", ["--checkpoint", str(random_ckpt), "--no-tta"]
    assert main([str(tmp_path / "mon"), "--out", str(out), *args]) == 0
    before = digest(out)
    assert main([str(tmp_path / "tue"), "--out", str(out), *args]) == 1
    assert (f"{out / 'scan_0001.png'} was cleaned from {tmp_path / 'mon' / 'scan_0001.png'}; cleaning "
            f"{tmp_path / 'tue' / 'scan_0001.png'} would replace it") in capsys.readouterr().err
    assert digest(out) == before


def test_a_page_that_cannot_be_read_skips_that_page_and_the_pdf_not_the_rest(tmp_path, random_ckpt, capsys):
    pdf = pdfium.PdfDocument.new()
    for size in ((300, 200), (14400, 14400), (300, 200)):   # the second: 200 x 200 inches
        pdf.new_page(*size)
    pdf.save(tmp_path / "report.pdf")
    pdf.close()
    out = tmp_path / "out"
    assert main([str(tmp_path / "report.pdf"), "--out", str(out), "--checkpoint", str(random_ckpt)]) == 3
    log = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["report-1.png", "report-3.png"]
    assert not (out / "report.pdf").exists()
    assert f"skipped {tmp_path / 'report.pdf'}: page 2 would be 40000 x 40000 px" in log.err
    assert f"skipped {tmp_path / 'report.pdf'}: {out / 'report.pdf'} not written, as it would lack" in log.err
    assert "cleaned 2 pages of 0 files" in log.out


def test_pages_a_shorter_scan_no_longer_gives_are_named_and_kept(tmp_path, random_ckpt, capsys):
    def tiff(pages):
        frames = [Image.fromarray(page(k)) for k in range(pages)]
        frames[0].save(tmp_path / "bundle.tif", save_all=True, append_images=frames[1:])

    out, args = tmp_path / "out", ["--checkpoint", str(random_ckpt), "--no-tta"]
    tiff(3)
    assert main([str(tmp_path / "bundle.tif"), "--out", str(out), *args]) == 0
    tiff(2)
    record = out / "denoise.jsonl"
    record.write_text(record.read_text() + "\n")   # a blank line: passed over
    assert main([str(tmp_path / "bundle.tif"), "--out", str(out), *args]) == 0
    assert (f"{out / 'bundle-3.png'}: cleaned from an earlier {tmp_path / 'bundle.tif'} with more pages; "
            f"left as it is") in capsys.readouterr().out
    assert (out / "bundle-3.png").exists()


def test_type_the_model_clears_is_kept_and_grey_solid_ink_with_keep_solid(
        tmp_path, random_ckpt, capsys, monkeypatch):
    import src.inference.scale as scale

    monkeypatch.setattr(scale, "clean_at_scale", lambda models, page, factor, **k: np.ones_like(page))
    img = np.full((420, 540), 230, np.uint8)
    img[20:34, 40:400] = 25     # a heading's stroke 14 px tall
    img[60:80, 40:400] = 100    # a watermark's grey stroke 20 px tall
    Image.fromarray(img).save(tmp_path / "scan.png")
    out, args = tmp_path / "out", [str(tmp_path / "scan.png"), "--checkpoint", str(random_ckpt), "--scale=1"]
    assert main([*args, "--out", str(out)]) == 0
    assert "ink wider than the model's strokes, grey or over the text, left to the model (a watermark? " \
           "--keep-solid keeps it)" in capsys.readouterr().out
    cleaned = load_page(out / "scan.png")
    assert (cleaned[22:32, 45:395] < 0.2).all() and (cleaned[62:78, 45:395] == 1).all()
    assert main([*args, "--out", str(out), "--keep-solid"]) == 0   # another setting: cleaned again
    assert "keeps it" not in capsys.readouterr().out
    assert (load_page(out / "scan.png")[62:78, 45:395] < 0.5).all()


def test_scale_one_with_the_identity_gives_the_page_back(tmp_path, capsys):
    ckpt = identity_checkpoint(tmp_path / "id.pt")
    img = page(2)
    exif = Image.Exif()
    exif[0x0112] = 8   # shown turned 90 degrees anticlockwise
    Image.fromarray(img).save(tmp_path / "scan.png", exif=exif)
    assert main([str(tmp_path / "scan.png"), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt),
                 "--scale", "1"]) == 0
    got = load_page(tmp_path / "out" / "scan.png")
    np.testing.assert_allclose(got, np.rot90(img, 1) / 255, atol=1 / 255)
    assert "(--scale 1.0)" in capsys.readouterr().out


def test_bilevel_writes_one_bit_pages_and_a_ccitt_pdf_and_gray_is_another_result(tmp_path, capsys):
    ckpt, out = identity_checkpoint(tmp_path / "id.pt"), tmp_path / "out"
    pages = [page(0), page(1, 420)]
    Image.fromarray(pages[0]).save(tmp_path / "doc.pdf", save_all=True, resolution=100,
                                   append_images=[Image.fromarray(pages[1])])
    run = [str(tmp_path / "doc.pdf"), "--out", str(out), "--checkpoint", str(ckpt), "--scale", "1",
           "--no-tta"]
    assert main(run) == 0
    gray = [load_page(out / name) for name in ("doc-1.png", "doc-2.png")]
    assert main(run + ["--bilevel"]) == 0 and "cleaned 2 pages" in capsys.readouterr().out   # not kept
    for name, cleaned in zip(["doc-1.png", "doc-2.png"], gray):
        with Image.open(out / name) as got:
            assert got.mode == "1" and got.info["dpi"] == pytest.approx((100, 100), abs=0.02)
            # the gray page thresholded (rounded to 8 bits there: a pixel at the threshold may differ)
            assert (np.asarray(got) != black_and_white(cleaned)).mean() < 1e-3
    pdf = pdfium.PdfDocument(out / "doc.pdf")
    try:
        sizes = [tuple(round(v) for v in sheet.get_size()) for sheet in pdf]
        filters = [next(sheet.get_objects()).get_filters() for sheet in pdf]
    finally:
        pdf.close()
    assert sizes == [(389, 186), (389, 302)] and filters == [["CCITTFaxDecode"]] * 2   # at the scan's size
    assert [(a > 0.5).mean() for a in read(out / "doc.pdf", 100)] == pytest.approx(
        [black_and_white(cleaned).mean() for cleaned in gray], abs=0.01)
    assert main(run + ["--bilevel"]) == 0 and "; kept 2 cleaned before" in capsys.readouterr().out


def test_black_and_white_splits_paper_from_ink_and_keeps_faint_ink_and_blank_paper():
    rng = np.random.default_rng(0)
    paper = np.clip(1 - np.abs(rng.normal(0, 0.02, (60, 80))), 0, 1).astype(np.float32)
    assert black_and_white(paper).all()   # no ink: the paper's slight variations stay white
    printed, faint = paper.copy(), paper.copy()
    printed[10:50:8, 5:75] = 0.1
    faint[10:50:8, 5:75] = 0.62   # ink a model left light grey: still ink
    for ink in (printed, faint):
        assert not black_and_white(ink)[10:50:8, 5:75].any() and black_and_white(ink)[11:50:8].all()
    assert black_and_white(np.full((4, 4), 0.2)).sum() == 0   # one level: split at 0.5


def turned(img: np.ndarray, angle: float) -> np.ndarray:
    """A page turned `angle` degrees anticlockwise about its centre, on white."""
    h, w = img.shape
    return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                          flags=cv2.INTER_CUBIC, borderValue=float(img.max()))


def test_skew_is_found_from_the_lines_of_text_and_a_page_without_lines_is_left_alone():
    rng = np.random.default_rng(0)
    for seed in range(3):
        clean = make_pair(seed, 1, 420)[1].astype(np.float32) / 255
        for angle in rng.uniform(-9, 9, 3):
            assert skew_angle(turned(clean, angle)) == pytest.approx(angle, abs=0.15)
            inner = (slice(60, -60), slice(60, -60))   # away from the corners a turn cuts off
            assert np.abs(upright(turned(clean, angle), angle) - clean)[inner].mean() < 0.03
    assert skew_angle(np.ones((300, 400), np.float32)) is None   # blank
    assert skew_angle(np.rot90(clean).copy()) is None   # on its side: its lines run down the page
    photo = cv2.GaussianBlur(rng.random((300, 400)).astype(np.float32), (0, 0), 8)
    assert skew_angle((photo - photo.min()) / (photo.max() - photo.min())) is None   # no lines in it
    page_, said = finish(turned(clean, 3.0), deskew=True, bilevel=True)
    assert page_.dtype == bool and said.startswith("; turned -3.0")


def test_deskew_turns_each_page_upright_and_says_by_how_much(tmp_path, capsys):
    ckpt, clean = identity_checkpoint(tmp_path / "id.pt"), make_pair(1, 1, 420)[1]
    scan = np.clip(np.rint(turned(clean.astype(np.float32), 4.0)), 0, 255).astype(np.uint8)
    Image.fromarray(scan).save(tmp_path / "scan.png")
    run = [str(tmp_path / "scan.png"), "--checkpoint", str(ckpt), "--scale", "1", "--no-tta"]
    assert main(run + ["--out", str(tmp_path / "as_is")]) == 0 and "turned" not in capsys.readouterr().out
    assert main(run + ["--out", str(tmp_path / "upright"), "--deskew"]) == 0
    said = re.search(r"scan\.png: .*; turned (\S+) degrees upright", capsys.readouterr().out)
    assert float(said.group(1)) == pytest.approx(-4.0, abs=0.15)
    inner = (slice(60, -60), slice(60, -60))
    error = {name: np.abs(load_page(tmp_path / name / "scan.png") - clean / 255)[inner].mean()
             for name in ("as_is", "upright")}
    assert error["upright"] < 0.03 < error["as_is"]


def test_a_model_predicting_nan_stops_with_a_hint_and_writes_nothing(tmp_path, capsys):
    import torch

    net = build_model("unet", width=4, depth=1)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    ckpt = tmp_path / "nan.pt"
    save_checkpoint(ckpt, make_checkpoint(net, kind="denoiser", model_name="unet",
                                          model_config=dict(width=4, depth=1), config={}))
    cv2.imwrite(str(tmp_path / "scan.png"), page(4))
    assert main([str(tmp_path / "scan.png"), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt),
                 "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert "scan.png" in err and "NaN or inf" in err and "--no-amp" in err, err
    assert not (tmp_path / "out" / "scan.png").exists()


def test_the_checkpoints_text_size_is_the_target(tmp_path, capsys):
    ckpt = identity_checkpoint(tmp_path / "id.pt")
    save_checkpoint(ckpt, {**load_checkpoint(ckpt), "text_size": 5 * text_size(page(3) / 255)})
    Image.fromarray(page(3)).save(tmp_path / "small.png")
    assert main([str(tmp_path / "small.png"), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt)]) == 0
    # text a fifth of the model's: enlarged, 2x at most
    assert "cleaned at 2.00x" in capsys.readouterr().out


def test_a_model_trained_on_enlarged_patches_cleans_large_text_at_its_own_size(tmp_path, capsys):
    ckpt = identity_checkpoint(tmp_path / "id.pt")
    size = text_size(page(3) / 255)
    zoomed = {**load_checkpoint(ckpt), "text_size": size / 2.5, "config": {"zoom": 0.5, "zoom_max": 3.2}}
    save_checkpoint(ckpt, zoomed)
    Image.fromarray(page(3)).save(tmp_path / "big.png")
    assert main([str(tmp_path / "big.png"), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt)]) == 0
    assert "cleaned at its own size" in capsys.readouterr().out
    save_checkpoint(ckpt, {**zoomed, "config": {}})   # the same model without enlarged patches: shrunk
    assert main([str(tmp_path / "big.png"), "--out", str(tmp_path / "out2"), "--checkpoint", str(ckpt)]) == 0
    assert "cleaned at 0.40x" in capsys.readouterr().out


def test_refusals_leave_everything_as_it_was(tmp_path, random_ckpt, capsys, monkeypatch):
    Image.fromarray(page()).save(tmp_path / "scan.png")
    before = digest(tmp_path)
    assert main([str(tmp_path), "--out", str(tmp_path), "--checkpoint", str(random_ckpt)]) == 1
    assert "is an input" in capsys.readouterr().err and digest(tmp_path) == before
    monkeypatch.chdir(tmp_path)   # no models/denoiser_best.pt here, nor in the project
    monkeypatch.setattr("src.inference.scale.PROJECT", tmp_path / "project")
    assert main(["scan.png", "--out", "out"]) == 1
    err = capsys.readouterr().err
    assert ("no checkpoint at models/scans_best.pt or models/general_long_best.pt or models/general_best.pt "
            f"or models/denoiser_best.pt, here or in {tmp_path / 'project'}" in err) and "make demo" in err
    assert not (tmp_path / "out").exists()
    if not torch.cuda.is_available():   # one line, not a traceback
        assert main(["scan.png", "--out", "out", "--checkpoint", str(random_ckpt), "--device", "cuda"]) == 1
        err = capsys.readouterr().err
        assert err == "error: --device cuda was requested but PyTorch sees no CUDA device; use --device cpu\n"
    with pytest.raises(SystemExit) as usage:
        main(["scan.png", "--out", "out", "--scale", "0"])
    assert usage.value.code == 2
    assert "--scale 0.0: must be above 0" in capsys.readouterr().err


def test_the_benchmark_prints_its_scale_rows(tmp_path, synthetic_dir):
    import subprocess
    import sys

    from tests.conftest import PROJECT

    ckpt = identity_checkpoint(tmp_path / "id.pt")
    out = subprocess.run([sys.executable, str(PROJECT / "benchmarks" / "bench_denoise.py"), "--checkpoint",
                          str(ckpt), "--data-dir", str(synthetic_dir), "--factors", "2", "--skip-a4"],
                         cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = re.search(r"^2x: noisy ([\d.]+), default ([\d.]+), .* estimated scale off by ([\d.]+)% on average",
                    out.stdout, re.M)
    assert row and float(row.group(3)) < 10, out.stdout


def test_the_scans_or_general_model_is_the_default_where_it_exists(tmp_path, random_ckpt, capsys,
                                                                   monkeypatch):
    """Scans come with noise the competition never shows, at other sizes: the scans recipe's model
    cleans them when it has been trained, else the longer general one's, else the general one's, else
    the competition's; the log names the one taken."""
    Image.fromarray(page()).save(tmp_path / "scan.png")
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"   # run from a folder of scans, the project's models/ are found too
    (project / "models").mkdir(parents=True)
    monkeypatch.setattr("src.inference.scale.PROJECT", project)
    shutil.copy(random_ckpt, project / "models" / "general_best.pt")
    assert main(["scan.png", "--out", "p"]) == 0
    assert f"model: {project / 'models' / 'general_best.pt'}" in capsys.readouterr().out
    shutil.copy(random_ckpt, tmp_path / "models" / "denoiser_best.pt")   # the current folder's first
    assert main(["scan.png", "--out", "a"]) == 0
    assert "model: models/denoiser_best.pt" in capsys.readouterr().out
    shutil.copy(random_ckpt, tmp_path / "models" / "general_best.pt")
    assert main(["scan.png", "--out", "b"]) == 0
    assert "model: models/general_best.pt" in capsys.readouterr().out
    shutil.copy(random_ckpt, tmp_path / "models" / "general_long_best.pt")
    assert main(["scan.png", "--out", "g"]) == 0
    assert "model: models/general_long_best.pt" in capsys.readouterr().out
    shutil.copy(random_ckpt, tmp_path / "models" / "scans_best.pt")
    assert main(["scan.png", "--out", "c"]) == 0
    assert "model: models/scans_best.pt" in capsys.readouterr().out


def test_a_page_that_fits_is_cleaned_whole_and_a_larger_one_in_smaller_tiles():
    assert tile_for((420, 540), 1) == WHOLE        # a competition page: one tile, as make_submission
    assert tile_for((3508, 2480), 1) == TILE < WHOLE   # an A4 page at 300 dpi
    assert tile_for((2600, 2000), 2.6) == WHOLE    # shrunk to fit before it is cleaned
