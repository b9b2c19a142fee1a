"""Inference speed: make_submission's prediction of every page, the reference way (fp32, one view a
forward pass) and predict_page's, timed in the same run (figures: docs/inference_speed.md).

    python benchmarks/bench_inference.py --checkpoint CKPT [--checkpoint CKPT ...] [--data-dir DIR]
        [--images DIR] [--limit N] [--batch-size 4] [--threads N] [--paths reference,current]
        [--no-amp | --all-bf16] [--no-held-out]

Each path runs in a process of its own, one after the other, with make_submission's defaults (flip TTA,
3 shifts, every view kept `compact` for the consensus, `clean_together`), and prints: seconds to predict
the pages (--images, else the test pages of --data-dir), seconds of the consensus, the process's peak
resident memory; then the pooled RMSE of each path on the pages the first checkpoint's training held out
(each page as predicted, and with the consensus), and the largest difference between the two paths'
pixels, before and after the consensus. The reference is predict_page computing every view in fp32,
one forward pass each, and the consensus's weighted interquartile mean sorting with a stable argsort on
one thread: the same pages, by the simplest means. --no-amp: predict_page in fp32; --all-bf16: its
U-Net's last layer in bf16 too, not in fp32.

    python benchmarks/bench_inference.py --checkpoint CKPT --per-view [--openvino] [--compile]

--per-view: milliseconds a view of the network alone on the first of the largest pages, median of 10:
fp32, predict_page's amp (bf16 body, fp32 last layer) and everything in bf16, a flip a forward pass and
the four flips in one; --openvino adds OpenVINO's CPU runtime (pip install openvino) in bf16 and f32,
--compile torch.compile (inductor, frozen weights) in bf16, with the seconds each takes to get ready.
Data: as bench_denoiser.py (../shared's zip prepared into .cache/, or --data-dir).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import resource
import subprocess
import sys
import tempfile
import time

from bench_denoiser import data_dir_of  # benchmarks/ is on sys.path: this script's folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from src.common.config import config_from_dict  # noqa: E402
from src.common.runtime import setup_runtime  # noqa: E402
from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.data.pages import list_images, load_page  # noqa: E402
from src.data.splits import text_groups  # noqa: E402
from src.inference import consensus, tiles  # noqa: E402
from src.inference.metrics import pooled_rmse  # noqa: E402
from src.inference.tiles import SHIFTS, check_tiling, cpu_bf16, predict_page, ramp, tile_starts  # noqa: E402
from src.models.checkpoints import load_checkpoint, model_from_checkpoint  # noqa: E402
from src.training.config import DenoiserConfig  # noqa: E402
from src.training.denoiser import split_train_val  # noqa: E402

PATHS = ("reference", "current")


@torch.inference_mode()
def reference_predict_page(models, page, *, tile=1024, overlap=32, batch_size=4, tta=False, shifts=0,
                           views=False):
    """predict_page on the CPU in fp32, each flip of each tile a forward pass of its own."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    page = np.asarray(page, dtype=np.float32)
    moved = [_reference_tiled(models, np.pad(page, ((dy, 0), (dx, 0)), mode="reflect"), tile, overlap,
                              batch_size, tta, views)[:, dy:, dx:] for dy, dx in ((0, 0), *SHIFTS[:shifts])]
    if not views:
        return np.mean(moved, axis=0, dtype=np.float32)[0]
    return np.mean([m[0] for m in moved], axis=0, dtype=np.float32), np.concatenate([m[1:] for m in moved])


def _reference_tiled(models, page, tile, overlap, batch_size, tta, views):
    check_tiling(tile, overlap)
    H, W = page.shape
    th, tw = min(tile, H), min(tile, W)
    boxes = [(y, x) for y in tile_starts(H, th, min(overlap, th - 1))
             for x in tile_starts(W, tw, min(overlap, tw - 1))]
    weight = np.outer(ramp(th, overlap), ramp(tw, overlap)) if len(boxes) > 1 else np.ones((th, tw))
    flips = [(), (-1,), (-2,), (-2, -1)] if tta else [()]
    n_views = len(models) * len(flips)
    acc = np.zeros((1 + n_views if views else 1, H, W), np.float64)
    norm = np.zeros((H, W), np.float64)
    for b in range(0, len(boxes), batch_size):
        chunk = boxes[b:b + batch_size]
        x = torch.from_numpy(np.stack([page[y:y + th, x0:x0 + tw] for y, x0 in chunk]))[:, None]
        pred, each = torch.zeros_like(x, dtype=torch.float32), []
        for model in models:
            for dims in flips:
                yi = model(x.flip(dims) if dims else x).float()
                yi = torch.where(yi.isfinite(), yi, torch.nan)
                yi = yi.flip(dims) if dims else yi
                pred += yi
                if views:
                    each.append(yi.clamp(0, 1))
        pred = (pred / n_views).clamp_(0, 1)
        tiles = torch.cat([pred, *each], 1).numpy()
        for (y, x0), t in zip(chunk, tiles):
            acc[:, y:y + th, x0:x0 + tw] += weight * t
            norm[y:y + th, x0:x0 + tw] += weight
    return (acc / norm).astype(np.float32)


def reference_weighted_iqm(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """consensus.weighted_iqm on one thread: a stable argsort of each pixel's values, then two gathers."""
    n, height, width = values.shape
    out = np.empty((height, width), np.float32)
    rows = 64
    for r in range(0, height, rows):
        v, w = (a[:, r:r + rows].reshape(n, -1).T for a in (values, weights))
        order = np.argsort(v, axis=1, kind="stable" if v.dtype == np.uint16 else None)
        v, w = np.take_along_axis(v, order, 1), np.take_along_axis(w, order, 1).astype(np.float64)
        cum = np.cumsum(w, axis=1)
        lo, hi = cum[:, -1:] * consensus.TRIM, cum[:, -1:] * (1 - consensus.TRIM)
        kept = np.clip(np.minimum(cum, hi) - np.maximum(cum - w, lo), 0, None)
        out[r:r + rows] = (np.einsum("pv,pv->p", kept, v) / kept.sum(1)).reshape(-1, width)
    return out


def reference_confidence(page: np.ndarray, views: np.ndarray) -> np.ndarray:
    """consensus.confidence on all of a page's views at once, its spread from np.std."""
    page, views = np.asarray(page, np.float32), consensus._floats(views).astype(np.float32, copy=False)
    spread = views.std(0, dtype=np.float64).astype(np.float32)
    spread = cv2.GaussianBlur(spread, (0, 0), consensus.SPREAD_SMOOTH) + consensus.SPREAD_FLOOR
    return np.stack([1 / ((cv2.GaussianBlur(np.abs(page - view), (0, 0), consensus.SMOOTH) + consensus.FLOOR)
                          * spread) for view in views])


def reference_iqm(views: list[np.ndarray], pages: list[np.ndarray]) -> np.ndarray:
    """consensus._iqm with the reference's confidence and weighted_iqm, one page after the other."""
    every = np.concatenate(views)
    weights = np.concatenate([reference_confidence(p, v) for p, v in zip(pages, views)])
    mean = reference_weighted_iqm(every, weights)
    return mean / np.float32(consensus.STEPS) if every.dtype == np.uint16 else mean


def predict_all(path: str, models, pages, batch_size: int, amp: bool):
    """(predictions, consensus, seconds predicting, seconds of consensus), as make_submission does it."""
    t0 = time.perf_counter()
    preds, views = [], []
    for x in pages:
        if path == "reference":
            pred, each = reference_predict_page(models, x, batch_size=batch_size, tta=True,
                                                shifts=len(SHIFTS), views=True)
        else:
            pred, each = predict_page(models, x, batch_size=batch_size, tta=True, shifts=len(SHIFTS),
                                      amp=amp, views=True)
        preds.append(pred)
        views.append(consensus.compact(each))
    t1 = time.perf_counter()
    together = consensus.clean_together(preds, views, pages)[0]
    return preds, together, t1 - t0, time.perf_counter() - t1


def worker(args: argparse.Namespace) -> None:
    """One path, in this process: its figures in args.out (.json) and its pages beside them (.npz)."""
    if args.worker == "reference":   # the reference consensus, through clean_together's own calls
        consensus._iqm = reference_iqm
    if args.all_bf16:   # no layer kept in fp32: the whole U-Net under bf16 autocast
        tiles._fp32_last_layer = lambda model: model if isinstance(model, tiles.UNet) else None
    setup_runtime("cpu", args.threads)
    ckpts = [load_checkpoint(c, "denoiser") for c in args.checkpoint]
    models = [model_from_checkpoint(c, path).eval() for c, path in zip(ckpts, args.checkpoint)]
    pages = [load_page(p) for p in list_images(args.pages)[:args.limit or None]]
    preds, together, secs, secs_consensus = predict_all(args.worker, models, pages, args.batch_size,
                                                        args.amp)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    figures = dict(pages=len(pages), seconds=secs, consensus=secs_consensus, peak_mb=peak_mb)
    arrays = {f"pred{i}": p for i, p in enumerate(preds)}
    arrays |= {f"together{i}": p for i, p in enumerate(together)}
    held = json.loads(args.held_out or "[]")
    if held:
        every = load_pairs(prepare_data(args.data_dir).train_pairs)
        pairs = [every[i] for i in held]
        preds, together, *_ = predict_all(args.worker, models, [x for x, _ in pairs], args.batch_size,
                                          args.amp)
        figures["rmse"] = pooled_rmse(zip(preds, (y for _, y in pairs)))
        figures["rmse_consensus"] = pooled_rmse(zip(together, (y for _, y in pairs)))
    np.savez(args.out.with_suffix(".npz"), **arrays)
    args.out.write_text(json.dumps(figures))


def run_path(path: str, args: argparse.Namespace, pages: Path, held: list[int], folder: Path) -> dict:
    out = folder / f"{path}.json"
    cmd = [sys.executable, __file__, "--worker", path, "--out", str(out), "--pages", str(pages),
           "--data-dir", str(args.data_dir), "--limit", str(args.limit), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--held-out", json.dumps(held),
           "--amp" if args.amp else "--no-amp", *("--all-bf16",) * args.all_bf16]
    for c in args.checkpoint:
        cmd += ["--checkpoint", str(c)]
    subprocess.run(cmd, check=True)
    figures = json.loads(out.read_text())
    with np.load(out.with_suffix(".npz")) as z:
        n = figures["pages"]
        figures["preds"] = [z[f"pred{i}"] for i in range(n)]
        figures["together"] = [z[f"together{i}"] for i in range(n)]
    return figures


def largest_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x.astype(np.float64) - y).max()) for x, y in zip(a, b))


def median_ms(run, x: torch.Tensor, reps: int = 10) -> float:
    """Median milliseconds of run(x) per image of x, after two warm-up calls."""
    times = []
    with torch.inference_mode():
        for i in range(reps + 2):
            t0 = time.perf_counter()
            run(x)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000 / len(x)


def per_view(args: argparse.Namespace, pages: Path) -> None:
    """The network alone, a view at a time and four at once, in each precision."""
    setup_runtime("cpu", args.threads)
    model = model_from_checkpoint(load_checkpoint(args.checkpoint[0], "denoiser"), args.checkpoint[0]).eval()
    page = max((load_page(p) for p in list_images(pages)[:args.limit or None]), key=np.size)
    one = torch.from_numpy(page)[None, None]
    four = torch.cat([one.flip(dims) if dims else one for dims in ((), (-1,), (-2,), (-2, -1))])
    cpu = torch.device("cpu")

    def all_bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x).float()

    runs = {"fp32": tiles._forward(model, cpu, False)}
    if cpu_bf16():
        runs |= {"amp (bf16 body, fp32 last layer)": tiles._forward(model, cpu, True), "all bf16": all_bf16}
    print(f"network alone, {page.shape[0]}x{page.shape[1]} page, ms per view (median of 10):")
    for name, run in runs.items():
        print(f"  {name}: {median_ms(run, one):.1f} a flip a pass, "
              f"{median_ms(run, four):.1f} four flips a pass", flush=True)
    if args.openvino:
        import openvino as ov

        t0 = time.perf_counter()
        graph = ov.convert_model(model, example_input=one, input=[(-1, 1, -1, -1)])
        ready = time.perf_counter() - t0
        for hint in ("bf16", "f32"):
            t0 = time.perf_counter()
            settings = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": hint,
                        "PERFORMANCE_HINT": "LATENCY"}
            request = ov.Core().compile_model(graph, "CPU", settings).create_infer_request()
            compiled = time.perf_counter() - t0
            ms = median_ms(lambda x: request.infer({0: x.numpy()}), one)
            print(f"  OpenVINO {ov.__version__.split('-')[0]} {hint}: {ms:.1f} a flip a pass "
                  f"(conversion {ready:.1f} s, compilation {compiled:.1f} s)", flush=True)
    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True
        compiled = torch.compile(model)

        def run(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return compiled(x).float()

        t0 = time.perf_counter()
        with torch.inference_mode():
            run(one)
        first = time.perf_counter() - t0
        ms = median_ms(run, one)
        moved = torch.from_numpy(np.pad(page, ((3, 0), (5, 0)), mode="reflect"))[None, None]
        t0 = time.perf_counter()
        with torch.inference_mode():
            run(moved)   # a page moved by SHIFTS[0]: another shape, compiled anew
        print(f"  torch.compile all bf16: {ms:.1f} a flip a pass (first call {first:.1f} s, "
              f"each further page shape {time.perf_counter() - t0:.1f} s)")


def describe_cpu(threads: int) -> str:
    name = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        name = names[0] if names else name
    native = [isa for isa, has in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                   ("AMX", torch.cpu._is_amx_tile_supported())) if has]
    bf16 = f"yes ({', '.join(native)})" if native else "no"
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    limit = f", oneDNN limited to {limit}" if limit else ""
    return f"CPU: {name}, {threads} threads, native bf16: {bf16}{limit}; torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="denoiser checkpoint; repeat for an ensemble (held-out pages: the first's)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--images", type=Path, help="folder of pages to time (default: the test pages)")
    p.add_argument("--limit", type=int, default=0, help="time only the first N pages (0: all)")
    p.add_argument("--batch-size", type=int, default=4, help="make_submission's --batch-size")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--paths", default=",".join(PATHS), help="which of reference,current to run")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="predict_page's amp, as make_submission passes it (default: on)")
    p.add_argument("--all-bf16", action="store_true",
                   help="the current path with the U-Net's last layer in bf16 too (on a CPU with AMX)")
    p.add_argument("--no-held-out", dest="score", action="store_false", help="skip the held-out RMSE")
    p.add_argument("--per-view", action="store_true", help="time the network alone, in each precision")
    p.add_argument("--openvino", action="store_true", help="--per-view: OpenVINO too")
    p.add_argument("--compile", action="store_true", help="--per-view: torch.compile too")
    p.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--pages", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--held-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    paths = [s for s in args.paths.split(",") if s]
    if not paths or any(s not in PATHS for s in paths):
        p.error(f"--paths {args.paths}: choose from {','.join(PATHS)}")
    args.data_dir = data_dir_of(p, args)
    data = prepare_data(args.data_dir)
    if args.images is None and not data.test_images:
        p.error(f"{args.data_dir}: no test pages; pass --images")
    pages = args.images or data.test_images[0].parent
    if args.per_view:
        print(describe_cpu(args.threads))
        return per_view(args, pages)
    held = []
    if args.score and data.train_pairs:
        cfg = config_from_dict(DenoiserConfig, load_checkpoint(args.checkpoint[0], "denoiser")["config"])
        held = split_train_val(cfg, text_groups([y for _, y in load_pairs(data.train_pairs)]))[1]
    print(describe_cpu(args.threads))
    precision = "fp32"
    if args.amp and cpu_bf16():
        precision = "all bf16" if args.all_bf16 else "amp (bf16 body, fp32 last layer)"
    print(f"{len(list_images(pages)[:args.limit or None])} pages ({pages}), {len(args.checkpoint)} model(s), "
          f"flip TTA, {len(SHIFTS)} shifts, consensus; batch size {args.batch_size}; "
          f"current path: {precision}")
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:
            f = found[path] = run_path(path, args, pages, held, Path(folder))
            print(f"{path}: prediction {f['seconds']:.1f} s, consensus {f['consensus']:.1f} s, "
                  f"peak RSS {f['peak_mb']:,.0f} MB", flush=True)
    for path, f in found.items():
        if "rmse" in f:
            print(f"{path}: held-out RMSE ({len(held)} pages) {f['rmse']:.6f}, with consensus "
                  f"{f['rmse_consensus']:.6f}")
    if len(found) == 2:
        a, b = found.values()
        both = (a["seconds"] + a["consensus"]) / (b["seconds"] + b["consensus"])
        print(f"speed-up: prediction {a['seconds'] / b['seconds']:.2f}x, consensus "
              f"{a['consensus'] / b['consensus']:.2f}x, both {both:.2f}x")
        if "rmse" in a:
            print(f"RMSE change: {b['rmse'] / a['rmse'] - 1:+.2%} by page, "
                  f"{b['rmse_consensus'] / a['rmse_consensus'] - 1:+.2%} with consensus")
        print(f"largest pixel difference: {largest_difference(a['preds'], b['preds']):.2e} as predicted, "
              f"{largest_difference(a['together'], b['together']):.2e} after consensus")


if __name__ == "__main__":
    main()
