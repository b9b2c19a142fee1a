"""`python -m src.denoise` on pages of other scales, and on a 300 dpi A4 page.

    python benchmarks/bench_denoise.py --checkpoint models/denoiser_best.pt [--data-dir competition]
        [--factors 1 2 2.5 3] [--keep-within K] [--skip-scale | --skip-a4] [--bilevel]

Scale: the pages the checkpoint's run held out (its own split), noisy and clean alike enlarged by each
factor (cubic, clipped to [0, 1]). Each enlarged page is cleaned as `denoise` cleans it by default (its
text size measured, the page shrunk to the model's, cleaned, brought back to its size), scored against the
enlarged clean page, beside: the noisy page, the page shrunk by the true factor (--scale F), the page
cleaned at its enlarged size (--scale 1), the page cleaned at 1x and then enlarged (the reference), and
the clean page itself through the default's shrinking and enlarging (what a perfect cleaner would score
without the page's own detail). The estimated scale is the text size measured on the enlarged page over
that on the page itself.

A4: `python -m src.denoise` run on a 2480 x 3508 page (A4 at 300 dpi) in a process of its own: its wall
time (Python's start and imports included), the seconds its summary line reports, and its peak memory.
Two pages: body text 2.4x the competition's (10-12 pt type at 300 dpi), which is shrunk to be cleaned,
and text of the competition's size over the whole sheet, which is cleaned at full size (the slowest).
Also the size of the cleaned page's file, and of a PDF of it as `denoise` writes for a PDF; `--bilevel`
runs `denoise --bilevel` (black and white).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.common.config import config_from_dict  # noqa: E402
from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.data.pages import save_page  # noqa: E402
from src.data.scans import read_written, write_pdf  # noqa: E402
from src.data.splits import text_groups  # noqa: E402
from src.data.synthetic import make_pair  # noqa: E402
from src.inference.metrics import pooled_rmse  # noqa: E402
from src.inference.scale import (  # noqa: E402
    KEEP_WITHIN, clean_at_scale, learnt_zoom, resize, scale_for, target_text_size, text_size)
from src.inference.tiles import tile_for  # noqa: E402
from src.models.checkpoints import load_model  # noqa: E402
from src.training.config import DenoiserConfig  # noqa: E402
from src.training.denoiser import split_train_val  # noqa: E402

A4 = (3508, 2480)   # (height, width) px at 300 dpi
PREDICT = dict(tta=True, shifts=0, amp=True)   # denoise's defaults


def clean(model, page: np.ndarray, factor: float) -> np.ndarray:
    """The page cleaned as `denoise` cleans it at that factor: its tiles, its defaults."""
    return clean_at_scale(model, page, factor, tile=tile_for(page.shape, factor), **PREDICT)


def enlarge(page: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), 0, 1)


def held_out(checkpoint: Path, data_dir: Path):
    """(model, target text size, zoom, [(noisy, clean)]): the checkpoint's model, the text sizes it learnt
    (`target_text_size`, `learnt_zoom`) and its run's held-out pairs."""
    model, ckpt = load_model(checkpoint, "denoiser")
    pairs = load_pairs(prepare_data(data_dir).train_pairs)
    cfg = config_from_dict(DenoiserConfig, ckpt["config"])
    _, val = split_train_val(cfg, text_groups([y for _, y in pairs]))
    return model, target_text_size([ckpt])[0], learnt_zoom([ckpt]), [pairs[i] for i in val]


def scale_rows(model, target: float, zoom: float, pages, factors, keep_within: float) -> None:
    """Print, per factor, the pooled RMSE of each way of cleaning and the estimated scale's worst error."""
    at_1x = [clean(model, x, 1) for x, _ in pages]
    print(f"{len(pages)} held-out pages, target text {target:.2f} px (learnt up to {zoom:g}x), "
          f"keep within {keep_within}x; "
          f"RMSE against the clean page enlarged alike")
    for f in factors:
        t0, rows = time.perf_counter(), {"noisy": [], "default": [], f"--scale {f:g} (the true factor)": [],
                                         "--scale 1": [], "1x then enlarged": [],
                                         "clean page through the default's resampling": []}
        errors, used = [], []
        for (x, y), ref in zip(pages, at_1x):
            xf, yf = enlarge(x, f), enlarge(y, f)
            size = text_size(xf)
            factor = scale_for(size, target, keep_within, zoom)
            errors.append(size / text_size(x) / f - 1)
            used.append(factor)
            rows["noisy"].append((xf, yf))
            rows["default"].append((clean(model, xf, factor), yf))
            rows[f"--scale {f:g} (the true factor)"].append((clean(model, xf, f), yf))
            rows["--scale 1"].append((clean(model, xf, 1), yf))
            rows["1x then enlarged"].append((enlarge(ref, f), yf))
            h, w = yf.shape   # the floor of any rescale-clean-restore: a perfect cleaner's page, resampled
            rows["clean page through the default's resampling"].append(
                (resize(resize(yf, (max(1, round(h / factor)), max(1, round(w / factor)))), (h, w)), yf))
        rmse = {k: pooled_rmse(v) for k, v in rows.items()}
        print(f"{f:g}x: " + ", ".join(f"{k} {v:.5f}" for k, v in rmse.items())
              + f"; default / reference {rmse['default'] / rmse['1x then enlarged']:.3f}; estimated scale "
              f"off by {np.mean(np.abs(errors)):.1%} on average, {np.max(np.abs(errors)):.1%} at most; "
              f"pages shrunk by {min(used):.2f}-{max(used):.2f}; {time.perf_counter() - t0:.0f} s")


def a4_page(kind: str) -> np.ndarray:
    """(3508, 2480) uint8: a synthetic dirty page at 300 dpi; `large`: its text 2.4x the competition's."""
    if kind == "large":
        noisy, _ = make_pair(0, 1, round(A4[0] / 2.4), round(A4[1] / 2.4))
        return np.rint(enlarge(noisy.astype(np.float32) / 255, 2.4)[:A4[0], :A4[1]] * 255).astype(np.uint8)
    return make_pair(0, 1, *A4)[0]


def vm_hwm(pid: int) -> int:
    """The peak resident memory of a running process, bytes (0 once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) * 1024 if found else 0


def a4_row(checkpoint: Path, kind: str, what: str, folder: Path, bilevel: bool = False) -> None:
    """Run denoise on an A4 page in a child process; print its wall time, reported time, peak memory and
    the size of its file, and of a PDF of it."""
    page = folder / f"a4-{kind}.png"
    save_page(page, a4_page(kind), (300, 300))
    cmd = [sys.executable, "-m", "src.denoise", str(page), "--out", str(folder / "out"),
           "--checkpoint", str(checkpoint)] + ["--bilevel"] * bilevel
    log = folder / "log.txt"
    t0, peak = time.perf_counter(), 0
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        while child.poll() is None:   # the child's own high-water mark: rusage would count this process's
            peak = max(peak, vm_hwm(child.pid))
            time.sleep(0.02)
    wall = time.perf_counter() - t0
    output = log.read_text()
    if child.returncode != 0:
        raise SystemExit(f"denoise failed:\n{output}")
    inside = re.search(r"in ([\d.]+) s ->", output).group(1)
    scale = re.search(r"-> [^:]+: (.*)$", output, re.M).group(1)
    cleaned, pdf = folder / "out" / page.name, folder / "cleaned.pdf"
    write_pdf(pdf, [read_written(cleaned)])
    print(f"A4 300 dpi ({A4[1]} x {A4[0]}), {what}: {wall:.1f} s wall ({inside} s reading, cleaning and "
          f"writing), peak memory {peak / 2 ** 30:.2f} GB; {scale}; the cleaned page "
          f"{cleaned.stat().st_size / 1e3:.0f} kB, as a PDF {pdf.stat().st_size / 1e3:.0f} kB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("models/denoiser_best.pt"))
    p.add_argument("--data-dir", type=Path, default=Path("competition"),
                   help="the competition's data (zip or extracted folders)")
    p.add_argument("--factors", type=float, nargs="+", default=[1, 2, 2.5, 3])
    p.add_argument("--keep-within", type=float, default=KEEP_WITHIN,
                   help="pages whose text is within this factor of the model's are cleaned as they are")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--skip-a4", action="store_true")
    p.add_argument("--bilevel", action="store_true", help="the A4 pages as `denoise --bilevel` cleans them")
    args = p.parse_args()
    if not args.skip_a4:
        with tempfile.TemporaryDirectory() as tmp:
            a4_row(args.checkpoint, "large", "text 2.4x the competition's", Path(tmp), args.bilevel)
            a4_row(args.checkpoint, "small", "text of the competition's size (nothing to shrink: the "
                   "slowest)", Path(tmp), args.bilevel)
    if not args.skip_scale:
        model, target, zoom, pages = held_out(args.checkpoint, args.data_dir)
        scale_rows(model, target, zoom, pages, args.factors, args.keep_within)


if __name__ == "__main__":
    main()
