"""The text size of a page, and cleaning at the model's scale (src/inference/scale.py)."""
import cv2
import numpy as np
import pytest
from torch import nn

from src.common.config import parse_config
from src.data.synthetic import make_pair, render_clean_page
from src.inference.scale import (COMPETITION_TEXT_SIZE, FACTORS, KEEP_WITHIN, PITCH_PER_SIZE, SOLID,
                                 ZOOM_AIM, clean_at_scale, clean_scan, describe_scale, guided_upsample,
                                 keep_solid_ink, kept_sizes, learnt_zoom, line_pitch, paper_normalised,
                                 resize, scale_for, solid_hint, target_text_size, text_size,
                                 training_text_size)
from src.models.checkpoints import load_checkpoint
from src.training.config import DENOISER_PRESETS, DenoiserConfig
from src.training.denoiser import run


def pair(seed: int, height: int = 420) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 (height, 540) in [0, 1]: a synthetic page with text."""
    noisy, clean = make_pair(seed, 1, height)
    return noisy.astype(np.float32) / 255, clean.astype(np.float32) / 255


def enlarge(page: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), 0, 1)


class Recorder(nn.Module):
    """The identity, keeping the shape of every batch it is given."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return x


def test_paper_normalised_lifts_a_stained_page_to_white_paper():
    _, clean = pair(0)
    ramp = np.linspace(0.5, 1, clean.shape[1], dtype=np.float32)   # light falling off to the left
    out = paper_normalised(clean * ramp)
    assert out.dtype == np.float32 and out.shape == clean.shape and 0 <= out.min() and out.max() <= 1
    assert np.median(out) > 0.97 and (out < 0.6).mean() == pytest.approx((clean < 0.6).mean(), abs=0.02)


@pytest.mark.parametrize("factor", [2, 2.5, 3])
def test_text_size_of_an_enlarged_page_is_that_many_times_larger(factor):
    for seed in (1, 2):
        noisy, _ = pair(seed)
        assert text_size(enlarge(noisy, factor)) / text_size(noisy) == pytest.approx(factor, rel=0.1)


def test_text_size_reads_noisy_and_clean_pages_alike_near_the_letters_height():
    for seed in (3, 4, 5):
        noisy, clean = pair(seed)
        assert text_size(noisy) == pytest.approx(text_size(clean), rel=0.1)
        assert 6 < text_size(clean) < 20   # capitals of 11.5-15.5 px, lower case smaller


def test_text_size_is_the_letters_not_a_watermark_that_outweighs_them():
    noisy, clean = pair(6)
    mark = np.zeros(noisy.shape, np.uint8)
    for y in (60, 210, 360):   # twelve grey rings about 95 px tall, with more ink than all the text
        for x in (70, 200, 330, 460):
            cv2.ellipse(mark, (x, y), (55, 40), 0, 0, 360, 255, 16)
    marked = np.where(mark > 0, np.minimum(noisy, 0.3), noisy)
    ink = paper_normalised(marked) < 0.6
    assert ink.sum() > 2 * (paper_normalised(noisy) < 0.6).sum()    # the area-weighted median is theirs
    assert text_size(marked) == pytest.approx(text_size(clean), rel=0.1)


def test_text_size_of_a_fine_scan_is_its_letters_not_its_grain():
    """At 4x the competition's resolution a page's grain is thousands of specks, far more than its letters:
    they must not pass for the many small letters beside a watermark's few large shapes."""
    _, clean = pair(7)
    fine = enlarge(clean, 4)
    hit = np.random.default_rng(0).random(fine.shape) < 0.04
    grainy = np.where(hit, np.float32(0), fine)
    assert text_size(grainy) == pytest.approx(text_size(fine), rel=0.1)


def test_a_faded_page_measures_as_it_does_at_normal_contrast():
    """Ink lighter than INK of its paper: only the strokes' cores would count, and a page squeezed into grey
    levels 150-250 would read no text (or, enlarged 3x, a fraction of its size); its contrast is stretched.
    A blank page's grain or JPEG blocks are not stretched into text."""
    for seed in (1, 2):
        _, clean = pair(seed)
        for low in (150, 180):
            faded = (low + (250 - low) * clean) / 255
            assert text_size(faded) == pytest.approx(text_size(clean), rel=0.1)
            assert text_size(enlarge(faded, 3)) == pytest.approx(text_size(enlarge(clean, 3)), rel=0.1)
    rng = np.random.default_rng(0)
    grain = np.clip(1 + rng.normal(0, 0.05, (420, 540)), 0, 1).astype(np.float32)
    assert text_size(grain) is None and text_size(enlarge(grain, 3)) is None
    blocks = cv2.imdecode(cv2.imencode(".jpg", np.uint8(grain * 255), [cv2.IMWRITE_JPEG_QUALITY, 10])[1], 0)
    assert text_size(blocks / np.float32(255)) is None


def test_letters_cut_across_by_blank_rows_are_not_enlarged_as_small_text():
    """Worn ink cuts letters into strips 2 px tall, which read as tiny text: the page is cleaned as it
    is, while the same page shrunk to half its size, whose letters are small, is still enlarged."""
    noisy, clean = pair(4)
    cut = noisy.copy()
    rows = np.arange(len(cut)) % 4 < 2
    cut[rows] = np.maximum(cut[rows], 0.97)
    target = text_size(clean)
    assert text_size(cut) < target / KEEP_WITHIN / 2
    assert clean_scan(Recorder(), cut, target, tta=False)[2] == 1
    half = resize(noisy, (noisy.shape[0] // 2, noisy.shape[1] // 2))
    assert clean_scan(Recorder(), half, target, tta=False)[2] == pytest.approx(0.5, rel=0.15)


def test_line_pitch_is_the_distance_between_lines_and_scales_with_the_page():
    noisy, clean = pair(6)
    assert line_pitch(noisy) == line_pitch(clean)
    assert 1.9 < line_pitch(clean) / text_size(clean) < 2.6   # lines further apart than letters are tall
    assert line_pitch(enlarge(noisy, 2)) == pytest.approx(2 * line_pitch(noisy), abs=1)
    assert line_pitch(np.ones((300, 400), np.float32)) is None


def test_a_stamp_taller_than_the_lines_are_apart_does_not_shrink_the_page():
    """A stamp of many dashes, with more ink than the text, passes for letters 3-4x their size; its page
    is cleaned as it is, since letters are never taller than their lines are apart, while the same text
    enlarged 3x is still shrunk."""
    noisy, clean = pair(6)
    mark = np.zeros(noisy.shape, np.uint8)
    for start in (-300, -180, -60, 60, 180):   # five diagonal strokes of dashes 28 px tall
        for x in range(0, 540, 18):
            y = start + x // 2
            if 0 <= y < 392:
                mark[y:y + 28, x:x + 14] = 255
    stamped = np.where(mark > 0, np.minimum(noisy, 0.4), noisy)
    target = text_size(clean)
    assert text_size(stamped) > 3 * target and line_pitch(stamped) < PITCH_PER_SIZE * text_size(stamped)
    assert clean_scan(Recorder(), stamped, target, tta=False)[2] == 1
    assert clean_scan(Recorder(), enlarge(noisy, 3), target, tta=False)[2] == pytest.approx(3, rel=0.1)


def test_text_size_is_none_without_text():
    blank = np.ones((300, 400), np.float32)
    assert text_size(blank) is None
    specks = blank.copy()
    specks[[10, 50, 90], [20, 60, 100]] = 0   # three dots: not text
    assert text_size(specks) is None
    assert text_size(np.random.default_rng(0).uniform(0.9, 1, (300, 400)).astype(np.float32)) is None


def test_training_text_size_is_the_median_over_pages_with_text():
    pages = [pair(s)[1] for s in (6, 7, 8)] + [np.ones((100, 100), np.float32)]
    assert training_text_size(pages) == pytest.approx(np.median([text_size(p) for p in pages[:3]]))
    assert training_text_size([np.ones((100, 100), np.float32)]) is None


def test_scale_for_keeps_pages_within_the_band_and_brings_others_to_the_target():
    assert scale_for(None, 12) == 1
    assert scale_for(12 * KEEP_WITHIN * 0.99, 12) == 1 and scale_for(12 / KEEP_WITHIN * 1.01, 12) == 1
    assert scale_for(30, 12) == pytest.approx(2.5)
    assert scale_for(12 * KEEP_WITHIN * 1.01, 12) == pytest.approx(KEEP_WITHIN * 1.01)
    assert scale_for(7, 12) == pytest.approx(7 / 12)
    assert scale_for(1, 12) == FACTORS[0] and scale_for(1000, 12) == FACTORS[1]
    assert scale_for(30, 12, keep_within=3) == 1


def test_a_model_trained_on_enlarged_patches_cleans_larger_text_as_it_is():
    aim = ZOOM_AIM * 3.2
    assert scale_for(12 * aim * 0.99, 12, zoom=3.2) == 1 and scale_for(12 * 1.2, 12, zoom=3.2) == 1
    assert scale_for(12 * aim * 2, 12, zoom=3.2) == pytest.approx(2)   # shrunk to the aim, not the target
    assert scale_for(6, 12, zoom=3.2) == pytest.approx(0.5)            # small text still enlarged
    assert learnt_zoom([{"config": {"zoom": 0.5, "zoom_max": 3.2}}]) == 3.2
    assert learnt_zoom([{"config": {"zoom": 0.5, "zoom_max": 3.2}}, {"config": {"zoom": 0.0, "zoom_max": 3}},
                        {}]) == 1


def test_resize_shrinks_by_area_and_clips_the_cubic_overshoot():
    page = np.zeros((40, 40), np.float32)
    page[:, 20:] = 1
    small = resize(page, (10, 10))
    assert small.shape == (10, 10) and set(np.unique(small)) == {0, 1}   # area: whole blocks average
    big = resize(page, (100, 100))
    assert big.shape == (100, 100) and big.min() == 0 and big.max() == 1


def test_clean_at_scale_cleans_the_shrunk_page_and_returns_the_page_size():
    noisy, _ = pair(9, 258)
    model = Recorder()
    same = clean_at_scale(model, noisy, 1, tta=False)
    np.testing.assert_array_equal(same, noisy)
    model.shapes.clear()
    out = clean_at_scale(model, noisy, 2, tta=False)
    assert model.shapes == [(129, 270)] and out.shape == noisy.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and np.abs(out - noisy).mean() < 0.05   # a round trip
    model.shapes.clear()
    clean_at_scale(model, noisy, 0.5, tta=False, tile=2048)
    assert model.shapes == [(516, 1080)]


class Tone(nn.Module):
    """A pixelwise 'cleaner': ink darker and paper white, by a contrast stretch."""

    def forward(self, x):
        return ((x - 0.3) / 0.5).clamp(0, 1)


def tone(page: np.ndarray) -> np.ndarray:
    return np.clip((page - 0.3) / 0.5, 0, 1)


def grainy_page(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(page, paper): a clean page enlarged 2x, (516, 1080), with grain on its paper; where the paper is
    15 px or more from ink."""
    _, clean = pair(seed, 258)
    big = enlarge(clean, 2)
    grain = np.abs(np.random.default_rng(seed).normal(0, 0.05, big.shape)).astype(np.float32)
    paper = cv2.erode((big > 0.99).astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    return np.clip(big - grain * (big > 0.95), 0, 1), paper


def test_a_page_cleaned_shrunk_keeps_the_sharpness_of_its_own_strokes():
    """The model's change, fitted on the shrunk page, applied to the page at its own size: with a
    pixelwise model, the strokes come out near the model applied at full size, far nearer than the
    cleaned shrunk page enlarged (0.062 against 0.092 when written)."""
    page, _ = grainy_page(11)
    h, w = page.shape
    out = clean_at_scale(Tone(), page, 2, tta=False)
    assert out.shape == page.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    truth = tone(page)
    enlarged = resize(tone(resize(page, (h // 2, w // 2))), (h, w))
    strokes = cv2.dilate((truth < 0.9).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(out - truth)[strokes].mean() < np.abs(enlarged - truth)[strokes].mean() * 0.75


def test_the_paper_stays_as_the_model_left_it():
    """A model that whitens the paper: the page's grain is not brought back there."""
    page, paper = grainy_page(12)
    assert paper.mean() > 0.1 and page[paper].std() > 0.02
    out = clean_at_scale(Tone(), page, 2, tta=False)
    assert out[paper].min() > 0.99


def test_guided_upsample_gives_back_a_page_its_model_did_not_change():
    page, _ = grainy_page(13)
    h, w = page.shape
    small = resize(page, (h // 2, w // 2))
    out = guided_upsample(page, small, small)
    ink = cv2.dilate((page < 0.9).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    round_trip = resize(small, (h, w))
    assert np.abs(out - page)[ink].mean() < np.abs(round_trip - page)[ink].mean() / 3


def test_an_enlarged_page_is_cleaned_at_its_own_scale():
    """A page enlarged 2.5x, its target the text size of the page itself: the model sees the page at
    its 1x size, within 10 %."""
    noisy, _ = pair(10, 258)
    big = enlarge(noisy, 2.5)
    factor = scale_for(text_size(big), text_size(noisy))
    assert factor == pytest.approx(2.5, rel=0.1)
    model = Recorder()
    assert clean_at_scale(model, big, factor, tta=False).shape == big.shape
    assert model.shapes[0] == pytest.approx(noisy.shape, rel=0.1)


def test_target_text_size_falls_back_to_the_competitions():
    assert target_text_size([{}]) == (COMPETITION_TEXT_SIZE, 1)
    assert target_text_size([{"text_size": 10.0}, {"text_size": 14.0}]) == (12.0, 0)
    assert target_text_size([{"text_size": 10.0}, {}]) == ((10 + COMPETITION_TEXT_SIZE) / 2, 1)


def test_describe_scale():
    assert describe_scale(31.0, 12.4, 2.5) == ("text 31.0 px (model as it is: 8.3 to 18.6 px): cleaned at "
                                               "0.40x")
    assert describe_scale(None, 12.4, 1) == "no text found: cleaned at its own size"
    assert describe_scale(31.0, 12.4, 1, 3.2) == ("text 31.0 px (model as it is: 8.3 to 31.7 px): cleaned at "
                                                  "its own size")


def test_the_logged_range_is_where_scale_for_leaves_a_page_as_it_is():
    for zoom in (1.0, 3.2):
        low, high = kept_sizes(12.4, zoom=zoom)
        assert scale_for(low, 12.4, zoom=zoom) == scale_for(high, 12.4, zoom=zoom) == 1
        assert scale_for(low * 0.99, 12.4, zoom=zoom) < 1 < scale_for(high * 1.01, 12.4, zoom=zoom)


def test_training_records_the_text_size_in_its_checkpoints(tmp_path, synthetic_dir):
    argv = ["--preset", "smoke", "--data-dir", str(synthetic_dir), "--models-dir", str(tmp_path),
            "--threads", "1"]
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS, argv)
    result = run(cfg, log=lambda *_: None)
    for path in (result["best_path"], result["last_path"]):   # a resumed run reads it from `last`
        assert 5 < load_checkpoint(path, "denoiser")["text_size"] < 30
    clean = render_clean_page(np.random.default_rng(0), 258).astype(np.float32) / 255
    assert training_text_size([clean]) == pytest.approx(text_size(clean))


class Whitener(nn.Module):
    """A model that clears everything: what the denoisers do to the inside of strokes wider than theirs."""

    def forward(self, x):
        return x * 0 + 1


def test_type_wider_than_the_models_strokes_is_kept_and_all_such_ink_when_asked():
    page = np.full((600, 800), 230, np.uint8)   # grey paper, judged over 31 px
    for row in range(120, 560, 24):   # body text: strokes 1-2 px
        cv2.putText(page, "the quick brown fox jumps over", (30, row), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 25, 1)
    page[30:50, 40:500] = 25                                    # a heading's stroke, apart from the text
    page[200:220, 40:700] = np.minimum(page[200:220, 40:700], 95)   # a watermark's grey stroke
    stamp = np.zeros_like(page)
    cv2.line(stamp, (60, 300), (700, 420), 1, 18)   # a stamp's dark stroke across the text: text in its box
    page[stamp > 0] = 25
    core = cv2.erode(stamp, np.ones((7, 7), np.uint8)) > 0
    page = page / np.float32(255)
    white = np.ones_like(page)
    kept, lightened = keep_solid_ink(page, white)
    assert (kept[33:47, 45:495] <= 0.15).all()   # type: as dark as the page shows it
    assert (kept[203:217, 45:695] == 1).all() and (kept[core] == 1).all()   # left to the model
    text = (page < 0.5) & (np.arange(600)[:, None] > 100) & (cv2.dilate(stamp, np.ones((9, 9))) == 0)
    text[195:225] = False
    assert (kept[text] == 1).mean() > 0.95   # strokes thinner than SOLID: the model's
    assert lightened > (14 * 650 + core.sum()) / page.size   # the grey stroke and the stamp's
    every, rest = keep_solid_ink(page, white, every=True)
    assert (every[203:217, 45:695] <= 0.5).all() and (every[core] <= 0.15).all() and rest == 0
    cleaned, _, factor, share = clean_scan(Whitener(), page, 12.0, scale=1, tta=False)
    assert factor == 1 and np.array_equal(cleaned, kept) and share == lightened
    assert np.array_equal(clean_scan(Whitener(), page, 12.0, scale=1, keep_solid=True, tta=False)[0], every)
    big = enlarge(page, 2)   # cleaned at half its size: strokes SOLID px wide there are twice as wide
    assert clean_scan(Whitener(), big, 12.0, scale=2, tta=False)[3] == pytest.approx(
        keep_solid_ink(big, np.ones_like(big), 2 * SOLID)[1], rel=0.05)
    assert solid_hint(0.001) == "" and "--keep-solid keeps it" in solid_hint(lightened)
