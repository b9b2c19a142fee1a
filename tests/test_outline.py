"""A page's outline in a photo of it, and `denoise --crop` cutting the page out."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
import pytest

from src.data.outline import cut_out, page_outline
from src.data.pages import load_page
from src.data.synthetic import make_pair
from src.denoise import main
from tests.conftest import identity_checkpoint

PROJECT = Path(__file__).resolve().parents[1]


def photo_of(page, rng, **kw):
    """bench_photo.py's photo of a page on a desk: (photo, its true corners)."""
    spec = importlib.util.spec_from_file_location("bench_photo", PROJECT / "benchmarks" / "bench_photo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.photo_of(page, rng, **kw)


def test_the_outline_of_a_photographed_page_is_found_and_the_page_squared_up():
    rng = np.random.default_rng(0)
    for seed in range(4):
        page = make_pair(seed, 1, 420)[1] / np.float32(255)
        photo, corners = photo_of(page, rng, size=(600, 800))
        found = page_outline(photo)
        assert found is not None and np.abs(found - corners).max() < 8, (found, corners)   # drawn in 1 %
        cut = cut_out(photo, found)
        # the page's shape, as its edges in the photo give it (a corner moved by up to 6 % of the page's
        # size moves an edge's length by as much)
        assert abs(cut.shape[1] / cut.shape[0] / (page.shape[1] / page.shape[0]) - 1) < 0.15
        back = cv2.resize(cut, page.shape[::-1], interpolation=cv2.INTER_AREA)
        assert (back < 0.5).mean() == pytest.approx((page < 0.5).mean(), rel=0.2)   # its ink, and no desk
        for corner in ((slice(0, 8), slice(0, 8)), (slice(0, 8), slice(-8, None)),
                       (slice(-8, None), slice(0, 8)), (slice(-8, None), slice(-8, None))):
            assert back[corner].mean() > page[corner].mean() - 0.1   # as light as the page's own corners


def test_a_scan_a_blank_photo_and_a_small_label_have_no_page_outline():
    scan = make_pair(0, 1, 420)[0] / np.float32(255)
    assert page_outline(scan) is None   # its paper fills the frame
    assert page_outline(np.full((300, 400), 0.4, np.float32)) is None
    desk = np.full((600, 800), 0.3, np.float32)
    desk[250:330, 350:450] = 0.95   # a label: too little of the photo to be the page
    assert page_outline(desk) is None


def test_crop_cleans_the_page_cut_out_of_a_photo_and_a_scan_whole(tmp_path, capsys):
    ckpt = identity_checkpoint(tmp_path / "id.pt")
    page = make_pair(2, 1, 420)[1] / np.float32(255)
    photo, _ = photo_of(page, np.random.default_rng(1), size=(600, 800))
    Image.fromarray(np.rint(photo * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(make_pair(3, 1, 420)[0]).save(tmp_path / "scan.png")
    run = [str(tmp_path / "photo.png"), str(tmp_path / "scan.png"), "--out", str(tmp_path / "out"),
           "--checkpoint", str(ckpt), "--scale", "1", "--no-tta", "--crop"]
    assert main(run) == 0
    log = capsys.readouterr().out
    cut = load_page(tmp_path / "out" / "photo.png")
    assert "photo.png -> photo.png: page cut out of the photo" in log
    assert cut.shape[0] < 600 and cut.shape[1] < 800 and cut.mean() > photo.mean() + 0.1   # the desk is gone
    assert "scan.png -> scan.png: no page's outline found, cleaned whole" in log
    assert load_page(tmp_path / "out" / "scan.png").shape == (420, 540)


def test_a_page_turned_a_half_right_angle_on_the_desk_keeps_its_four_corners_in_order():
    desk = np.full((800, 800), 0.3, np.float32)
    cv2.fillPoly(desk, [cv2.boxPoints(((400, 400), (420, 300), 45)).astype(np.int32)], 0.95)   # a diamond
    corners = page_outline(desk)
    assert corners is not None and len({tuple(c) for c in corners.round()}) == 4
    for a, b, c in zip(corners, np.roll(corners, -1, 0), np.roll(corners, -2, 0)):
        (x1, y1), (x2, y2) = b - a, c - b
        assert x1 * y2 - y1 * x2 > 0   # clockwise on the screen (y runs down), every corner once
    assert sorted(cut_out(desk, corners).shape) == pytest.approx([300, 420], abs=6)
