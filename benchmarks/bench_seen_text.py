"""Does the denoiser score better on pages whose text it trained on? The same pages, two models.

    python benchmarks/bench_seen_text.py --arm unseen|seen [--preset P] [--data-dir D] [-- flags]
    python benchmarks/bench_seen_text.py --nearest models/denoiser_best.pt [--data-dir D]

The competition's training pages are 36 texts, each laid over 2-4 backgrounds, and its test pages
show other texts. A split by page (`--split-by page`) validates on texts the model trained on. This
benchmark holds out whole texts (`--split-by text`, `--val-fraction 0.3`) and scores every other page
of each held-out text (E). Arm `unseen` trains on the remaining pages. Arm `seen` trains on the other
pages of E's texts as well, and drops as many of the remaining pages, picked at random, so that both
arms train on the same number of pages. Any gap between the two RMSEs on E is the value of having
seen the text. The arms' checkpoints store the preset's split, not this one: score them here only.

--nearest: how far each page's prediction by a checkpoint is from the nearest clean page of its size
among the pages the checkpoint trained on, for the test pages and for the pages its run held out. A
held-out page whose text is on a training page sits next to it; a page with a text of its own does not.
Data: as bench_denoiser.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_denoiser import add_training_args, data_dir_of  # noqa: E402

from src.common.config import config_from_dict, parse_config  # noqa: E402
from src.data.competition import load_pairs, prepare_data  # noqa: E402
from src.data.pages import load_page  # noqa: E402
from src.data.splits import split_pages, text_groups  # noqa: E402
from src.inference.tiles import predict_page  # noqa: E402
from src.models.checkpoints import load_model  # noqa: E402
from src.training.config import DENOISER_PRESETS, DenoiserConfig  # noqa: E402
import src.training.denoiser as td  # noqa: E402


def arm_split(texts: list[int], arm: str, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, evaluated) pages of an arm; both arms evaluate the same pages on equally many."""
    rest, held = split_pages(len(texts), 0.3, seed=seed, groups=texts)
    by_text: dict[int, list[int]] = {}
    for page in held:
        by_text.setdefault(texts[page], []).append(page)
    scored = sorted(p for pages in by_text.values() for p in pages[0::2])
    twins = sorted(p for pages in by_text.values() for p in pages[1::2])
    if arm == "seen":
        dropped = set(np.random.default_rng(seed).choice(rest, len(twins), replace=False).tolist())
        rest = sorted([p for p in rest if p not in dropped] + twins)
    return rest, scored


def nearest(checkpoint: Path, data_dir: Path) -> None:
    """Print the range of distances from predicted pages to their nearest clean training page."""
    model, ckpt = load_model(checkpoint, "denoiser")
    data = prepare_data(data_dir)
    pairs = load_pairs(data.train_pairs)
    cleans = [y for _, y in pairs]
    train, held = td.split_train_val(config_from_dict(DenoiserConfig, ckpt["config"]), text_groups(cleans))
    trained = [cleans[i] for i in train]   # not the held-out pages' own clean pages
    groups = {"test pages": [load_page(p) for p in data.test_images],
              "held-out pages": [pairs[i][0] for i in held]}
    for what, pages in groups.items():   # predicted as make_submission does
        dists = [min((float(np.sqrt(np.mean((pred - c) ** 2))) for c in trained if c.shape == pred.shape),
                     default=float("inf"))
                 for pred in (predict_page(model, x, tta=True, amp=True) for x in pages)]
        sized = [d for d in dists if d != float("inf")]   # inf: no training page of that size
        alone = f"; {len(dists) - len(sized)} with no training page of their size" * (len(sized) < len(dists))
        print(f"{what}: nearest clean training page at RMSE " + (
            f"{min(sized):.4f}-{max(sized):.4f}" if sized else "-") + f" ({len(pages)} pages{alone})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--arm", choices=["unseen", "seen"])
    mode.add_argument("--nearest", type=Path, metavar="CHECKPOINT")
    add_training_args(p)
    args = p.parse_args()
    data_dir = data_dir_of(p, args)
    if args.nearest:
        return nearest(args.nearest, data_dir)
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS,
                       ["--preset", args.preset, "--data-dir", str(data_dir),
                        "--name", f"text_{args.arm}",
                        "--models-dir", str(ROOT / ".cache" / "bench_seen_text"),
                        *[a for a in args.rest if a != "--"]])
    # train_denoiser's split, replaced by this arm's (the run logs how many held-out pages it has seen)
    td.split_train_val = lambda cfg, texts: arm_split(texts, args.arm, cfg.split_seed)
    result = td.run(cfg)
    best = min(r["score"] for r in result["history"] if "score" in r)
    print(f"{args.arm}: RMSE {best:.5f} on the pages of held-out texts")


if __name__ == "__main__":
    main()
