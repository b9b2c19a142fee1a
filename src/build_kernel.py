"""Build a Kaggle kernel folder that `kaggle kernels push -p kernel` uploads as it is.

    python -m src.build_kernel --id jane/dirty-docs-unet --train [--preset full] [--gpu]
    python -m src.build_kernel --id jane/dirty-docs-unet --checkpoint models/a_best.pt [--checkpoint B ...]

--train: the kernel trains with the preset (extra train_denoiser flags pass through, e.g. --epochs 30)
and writes the submission. --checkpoint: inference only, several averaged as make_submission averages
them; the weights go into kernel/weights/, a dataset to upload once with `kaggle datasets create`.
Either way the kernel script is generated from this package (src/kaggle/bundle.py) and, on Kaggle,
runs `src.kaggle.kernel.run_kernel`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import shlex
import sys

from src.common.runner import run_command
from src.kaggle.bundle import (DATASET_METADATA, KernelError, check_title, parse_kernel_id, title_from_slug,
                               weights_dataset)
from src.kaggle.kernel import DEFAULT_OUT, build, next_steps, shipped
from src.submission.reader import CSV_NAME
from src.training.config import DENOISER_PRESETS


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    """(build arguments, train_denoiser flags passed through to the kernel's training run)."""
    p = argparse.ArgumentParser(prog="python -m src.build_kernel", description=__doc__.split("\n")[0],
                                epilog="With --train, any other flag goes to the kernel's training run "
                                       "(python -m src.train_denoiser --help lists them).",
                                allow_abbrev=False)   # an abbreviation may be meant for train_denoiser
    p.add_argument("--id", required=True, dest="kernel_id", help="<username>/<kernel-slug>")
    p.add_argument("--title", help="kernel title; must slugify to the slug (default: from the slug)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train", action="store_true", help="train in the kernel, then submit")
    mode.add_argument("--checkpoint", type=Path, action="append",
                      help="denoiser checkpoint to ship as a dataset (inference only); repeat to ship "
                           "several, which the kernel averages (an ensemble)")
    p.add_argument("--preset", choices=sorted(DENOISER_PRESETS),
                   help="training recipe for --train (default: full)")
    p.add_argument("--gpu", action="store_true", help="run the kernel on a GPU")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"kernel folder to write (default: {DEFAULT_OUT})")
    args, extra = p.parse_known_args(argv)
    if not args.train and (extra or args.preset):
        p.error(f"{' '.join(extra) or '--preset'}: training flags need --train")
    owned = sorted({a.split("=")[0] for a in extra} & {"--data-dir", "--models-dir"})
    if args.train and owned:   # train_argv overrides them, so the kernel would silently not use them
        p.error(f"{' and '.join(owned)}: the kernel reads the competition from Kaggle's inputs and writes "
                f"to /kaggle/working; leave {'them' if len(owned) > 1 else 'it'} out")
    args.preset = args.preset or "full"
    try:   # flags Kaggle would refuse are usage errors, as a bad train_denoiser flag is (exit 2)
        owner, slug = parse_kernel_id(args.kernel_id)
        check_title(args.title if args.title is not None else title_from_slug(slug), slug)
        if args.checkpoint:
            weights_dataset(owner, slug)
    except KernelError as e:
        p.error(str(e))
    return args, extra


def main(argv=None) -> int:
    args, extra = parse_args(argv)
    command = shlex.join(["python", "-m", "src.build_kernel", *(sys.argv[1:] if argv is None else argv)])
    return run_command(lambda: report(args, extra, build(args, extra, command)), errors=(KernelError,))


def report(args: argparse.Namespace, extra: list[str], built: dict) -> None:
    if args.train:
        mode = f"trains with preset {args.preset!r}" + "".join(f" {a}" for a in extra)
    else:
        mode = f"loads {shipped(args)} from dataset {built['dataset']}"
    print(f"built {built['out']}/ for kernel {args.kernel_id}: the script {mode}, then writes and checks "
          f"{CSV_NAME}; {'GPU' if args.gpu else 'CPU'}, no internet")
    print(f"  {built['metadata']}")
    print(f"  {built['code']} ({built['code'].stat().st_size / 1024:.0f} KiB, generated from src/)")
    if built["weights"] is not None:
        print(f"  {built['weights']}/ (dataset {built['dataset']}: {shipped(args)}, "
              f"{DATASET_METADATA})")
    print(next_steps(args.kernel_id, built["out"], built["dataset"]))


if __name__ == "__main__":
    sys.exit(main())
