"""Time the submission writer against the naive one on the 72 test pages (14,230,080 rows).

    python benchmarks/bench_writer.py [--pages N]

Predictions are the real test pages themselves when ../shared/competition holds the competition zip
(extracted into a temporary folder, removed afterwards), otherwise random pages of the test set's
sizes (48 pages 420x540 and 24 pages 258x540). Each writer runs in a fresh subprocess that loads one
page at a time; a writer's time excludes imports, its memory is the subprocess's peak RSS
(ru_maxrss, so Python, NumPy, pandas and OpenCV included) and, in brackets, how far that peak
rose above the RSS just before writing. The last line is `writer speedup <ratio>x, peak <MB> MB`
for our writer.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COMPETITION_ZIP = ROOT.parent / "shared" / "competition" / "denoising-dirty-documents.zip"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.data.competition import prepare_data  # noqa: E402
from src.data.pages import load_page  # noqa: E402
from src.submission import reader  # noqa: E402
from src.submission.writer import write_submission  # noqa: E402


def naive_write(pages, out: Path) -> int:
    """The usual kernel code: one id string per pixel in a Python loop, then DataFrame.to_csv."""
    ids, values = [], []
    for page_id, pred in pages:
        h, w = pred.shape
        for c in range(w):
            for r in range(h):
                ids.append(f"{page_id}_{r + 1}_{c + 1}")
        values.append(np.clip(pred, 0, 1).T.ravel())   # values vectorised: kinder than the usual loop
    pd.DataFrame({"id": ids, "value": np.concatenate(values)}).to_csv(out, index=False)
    return len(ids)


def make_predictions(work: Path, n_pages: int | None) -> tuple[Path, Path | None, str]:
    """Save the predictions to work/preds.npz; returns it, the sample submission and a description."""
    if COMPETITION_ZIP.is_file():
        (work / "data").mkdir()
        (work / "data" / COMPETITION_ZIP.name).symlink_to(COMPETITION_ZIP)
        data = prepare_data(work / "data")
        pages = {p.stem: load_page(p) for p in data.test_images[:n_pages]}
        kind = f"of {len(data.test_images)} real test pages (prediction = noisy page)"
        sample = data.sample_submission
        if len(pages) < len(data.test_images):   # the sample's ids are those of every page
            sample, kind = None, kind + "; no sample id check, which needs them all"
    else:
        rng = np.random.default_rng(0)
        heights = [420, 420, 258] * 24                  # 48 x 420 + 24 x 258 rows of 540 pixels
        pages = {str(3 * k + 1): rng.random((h, 540), np.float32) for k, h in enumerate(heights[:n_pages])}
        sample, kind = None, f"of {len(heights)} synthetic random pages"
    np.savez(work / "preds.npz", **pages)
    return work / "preds.npz", sample, f"{len(pages)} {kind}, {sum(p.size for p in pages.values()):,} pixels"


def run_child(which: str, preds: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--preds", str(preds), "--out", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{which} writer failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def rss_mb() -> float:
    """Resident memory now (Linux), else the peak so far."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    """Inside the subprocess: write the submission from preds.npz, one page in memory at a time."""
    npz = np.load(args.preds)
    pages = ((name, npz[name]) for name in npz.files)
    base = rss_mb()
    start = time.perf_counter()
    if args.child == "naive":
        rows = naive_write(pages, args.out)
    else:
        rows = write_submission(pages, args.out, compress=args.compress, sample=args.sample)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak, "growth_mb": peak - base}))


def compare(a: Path, b: Path) -> float:
    """Largest difference between the values two submissions give the same id (ids must match)."""
    (ka, va), (kb, vb) = ((np.concatenate(c) for c in zip(*reader._read(p, reader._Tally())))
                          for p in (a, b))
    oa, ob = np.argsort(ka, kind="stable"), np.argsort(kb, kind="stable")
    if not np.array_equal(ka[oa], kb[ob]):
        sys.exit(f"{a.name} and {b.name} hold different ids")
    return float(np.abs(va[oa] - vb[ob]).max())


def report(name: str, r: dict) -> None:
    print(f"{name:<22} {r['seconds']:7.2f} s  {r['rows']:>12,} rows  peak {r['peak_mb']:6.0f} MB "
          f"(+{r['growth_mb']:.0f} MB while writing)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=None,
                   help="write only the first N test pages (default: all, which the sample id check needs)")
    p.add_argument("--child", choices=["naive", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--preds", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--compress", default=None, help=argparse.SUPPRESS)
    p.add_argument("--sample", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pages is not None and args.pages < 1:   # 0 fails deep in NumPy; -N slices from the end
        p.error(f"--pages {args.pages}: must be at least 1")
    if args.child:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="bench_writer-"))
    try:
        preds, sample, what = make_predictions(work, args.pages)
        print(f"predictions: {what}")
        naive = run_child("naive", preds, work / "naive.csv")
        report("naive (loop + pandas)", naive)
        ours = run_child("ours", preds, work / "ours.csv")
        report("write_submission", ours)
        report("  ... zip", run_child("ours", preds, work / "ours.csv.zip", "--compress", "zip"))
        if sample is not None:
            checked = run_child("ours", preds, work / "ours.csv", "--sample", str(sample))
            report("  ... + sample id check", checked)
        diff = compare(work / "naive.csv", work / "ours.csv")
        print(f"same ids; values differ by at most {diff:.2e} (ours are rounded to 4 decimals)")
        if diff > 1e-4:
            sys.exit("values differ by more than 1e-4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"writer speedup {naive['seconds'] / ours['seconds']:.1f}x, peak {ours['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
