"""What `python -m src.denoise`'s record of a folder (OUT/denoise.jsonl, src/data/ledger.py) costs a page.

    python benchmarks/bench_ledger.py [--pages 5000] [--rewrite]

Records --pages pages in a temporary folder with `Ledger.writing`, as `denoise` does around each page
it writes (no cleaning: the record alone), and prints the time a page takes at a few points and in all,
then the time the next run takes to open the record. `--rewrite` instead writes the whole record
atomically after every page, as a single JSON file kept whole would need: the comparison that made it
a file of appended lines.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.common.files import atomic_write  # noqa: E402
from src.data.ledger import LEDGER, Ledger  # noqa: E402

# what denoise records of its settings: the shape of a real line (models: a weights digest)
SETTINGS = dict(tta=True, shifts=0, overlap=32, amp=True, models=["0123456789abcdef" * 4], scale=None, tile=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=5000)
    p.add_argument("--rewrite", action="store_true", help="rewrite the whole record after every page")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        source = out / "a-scan-of-a-letter-0001.png"
        source.write_bytes(b"a scan")
        ledger = Ledger(out, SETTINGS)
        checkpoints = {args.pages // 50, args.pages // 5, args.pages // 2, args.pages}
        t0 = last = time.perf_counter()
        for k in range(1, args.pages + 1):
            name = f"letter-{k:05d}.png"
            if args.rewrite:
                ledger.pages[name] = ledger._entry(source, None)
                atomic_write(out / LEDGER, lambda f: Path(f).write_text(json.dumps(ledger.pages, indent=1)))
            else:
                with ledger.writing(name, source):
                    pass
            now = time.perf_counter()
            if k in checkpoints:
                size = (out / LEDGER).stat().st_size / 1024
                print(f"page {k}: {(now - last) * 1e3:.2f} ms, record {size:.0f} KiB")
            last = now
        how = "rewritten whole" if args.rewrite else "appended"
        print(f"{args.pages} pages: {time.perf_counter() - t0:.1f} s ({how})")
        if not args.rewrite:
            t0 = time.perf_counter()
            Ledger(out, SETTINGS)
            print(f"opened by the next run: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
