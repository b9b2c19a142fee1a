"""The Kaggle kernel: build its folder here (script, metadata, weights), and what the script runs on
Kaggle (prepare the mounted data, train or load, write and check the submission).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
import shlex
import shutil
import sys
import tempfile

from src.common.config import parse_config
from src.common.errors import CheckpointError, DataError
from src.common.files import case_clashes
from src.data.competition import (CLEAN, COMPETITION, SAMPLE, TEST, TRAIN, CompetitionData,
                                  has_competition_data, kaggle_data_dirs, prepare_data)
from src.kaggle.bundle import (CODE_FILE, DATASET_METADATA, KERNEL_METADATA, WEIGHTS_DIR, KernelError,
                               check_title, dataset_metadata, kernel_metadata, parse_kernel_id, render_bundle,
                               title_from_slug, weights_dataset)
from src.models.checkpoints import load_model
from src.submission.predict import PredictConfig, check_config
from src.submission.predict import run as run_submission
from src.submission.reader import CSV_NAME, SubmissionError, validate_submission
from src.training.config import DENOISER_PRESETS, DenoiserConfig
from src.training.denoiser import run as train_denoiser

DEFAULT_OUT = Path("kernel")


OUTPUT_DIR = Path("out")


def train_argv(preset: str, extra: list[str], data_dir: Path, models_dir: Path) -> list[str]:
    """train_denoiser flags for the kernel's run; the kernel's folders win over anything passed."""
    return ["--preset", preset, *extra, "--data-dir", str(data_dir), "--models-dir", str(models_dir)]


def kernel_problems(cfg: DenoiserConfig, gpu: bool) -> list[str]:
    """Training settings the kernel cannot honour: refused here, else the kernel fails on Kaggle, after
    the queue. (--data-dir and --models-dir are refused by parse_args: the kernel overrides them.)"""
    problems = []
    if cfg.device.startswith("cuda") and not gpu:
        problems.append(f"--device {cfg.device} needs a GPU kernel: add --gpu (or leave --device out: auto "
                        f"takes the GPU when the kernel has one)")
    if cfg.init_from:   # the kernel uploads one code file: no file of this machine reaches it
        problems.append(f"--init-from {cfg.init_from}: the kernel cannot read files from this machine; "
                        f"train here with --init-from, then ship the weights with --checkpoint")
    if cfg.resume:
        problems.append("--resume: a fresh kernel has no earlier run to resume; leave it out (or resume "
                        "here, then ship the weights with --checkpoint)")
    if max(cfg.degraded_shares()) > 0:   # Kaggle's image has no Augraphy to degrade pages with
        problems.append(f"--preset {cfg.preset} (--degraded): Kaggle's image has no Augraphy; train here, "
                        f"then ship the weights with --checkpoint")
    return problems


def build(args: argparse.Namespace, extra: list[str] = (), command: str = "") -> dict:
    """Write the kernel folder. Returns {"out", "metadata", "code", "dataset", "weights"}.

    Raises: KernelError for an id or title Kaggle would refuse, CheckpointError for a bad checkpoint.
    """
    owner, slug = parse_kernel_id(args.kernel_id)
    title = check_title(args.title if args.title is not None else title_from_slug(slug), slug)
    out = Path(args.out)
    plan = {"mode": "train" if args.train else "checkpoint", "id": args.kernel_id}
    dataset = None
    if args.train:
        # a typo in a passed-through flag fails here, not after the upload
        cfg = parse_config(DenoiserConfig, DENOISER_PRESETS, train_argv(args.preset, list(extra), out, out),
                           prog="python -m src.build_kernel --train")
        problems = kernel_problems(cfg, args.gpu)
        if problems:
            raise KernelError("\n  ".join(problems))
        plan.update(preset=args.preset, train_args=list(extra))
    else:
        names = [c.name for c in args.checkpoint]
        twice = sorted({n for group in case_clashes(names) for n in group})
        if twice:   # one folder holds the dataset's files: the second would replace the first
            raise KernelError(f"checkpoints named alike ({', '.join(twice)}): the weights dataset holds them "
                              f"in one folder; copy one to another name (or train with --name)")
        for c in args.checkpoint:   # a checkpoint that does not build fails here, not on Kaggle
            load_model(c, "denoiser")
        dataset = weights_dataset(owner, slug)
        plan.update(checkpoints=names, dataset=dataset)
    if out.exists() and not out.is_dir():
        raise KernelError(f"--out {out}: is a file, not a folder; name a folder for the kernel's files")
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_DIR
    ours = (weights / DATASET_METADATA).is_file()   # from an earlier build
    if dataset is not None:
        if weights.exists() and not ours:
            raise KernelError(f"{weights} exists and is not a weights folder of this tool: move it away")
        # staged beside the old folder first: the checkpoint may be the copy inside it (a rebuild after
        # a code change), which removing the old folder first would delete
        staged = Path(tempfile.mkdtemp(prefix=f".{WEIGHTS_DIR}.", dir=out))
        for c in args.checkpoint:
            shutil.copy2(c, staged / c.name)
        write_json(staged / DATASET_METADATA, dataset_metadata(dataset))
    if ours:
        shutil.rmtree(weights)
    if dataset is not None:
        staged.rename(weights)
    code = out / CODE_FILE
    code.write_text(render_bundle("src.kaggle.kernel", "run_kernel", plan, command), encoding="utf-8")
    metadata = out / KERNEL_METADATA
    write_json(metadata, kernel_metadata(args.kernel_id, title, gpu=args.gpu, dataset=dataset))
    return dict(out=out, metadata=metadata, code=code, dataset=dataset, weights=weights if dataset else None)


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def next_steps(kernel_id: str, out: Path, dataset: str | None) -> str:
    """The kaggle CLI commands (flags as in kaggle 2.2.5) that upload, run and submit."""
    weights, folder = shlex.quote(str(out / WEIGHTS_DIR)), shlex.quote(str(out))
    steps = []
    if dataset is not None:
        steps += [(f"kaggle datasets create -p {weights}", "upload the weights (once)"),
                  (f"kaggle datasets status {dataset}", "wait for 'ready' before pushing"),
                  (f'kaggle datasets version -p {weights} -m "new weights"', "later, for new weights")]
    steps += [(f"kaggle kernels push -p {folder}", "upload the script; Kaggle runs it"),
              (f"kaggle kernels status {kernel_id}", "until 'complete'"),
              (f"kaggle kernels logs {kernel_id}", "its log, if it failed"),
              (f"kaggle kernels output {kernel_id} -p {OUTPUT_DIR}/",
               f"downloads {CSV_NAME}" + (" and models/" if dataset is None else "")),
              (f'kaggle competitions submit {COMPETITION} -f {OUTPUT_DIR / CSV_NAME} -m "kernel {kernel_id}"',
               "")]
    width = max(len(cmd) for cmd, why in steps if why)
    return "\n".join(
        ["Next steps (accept the competition's rules on its Kaggle page first; kaggle credentials as for "
         "`python -m src.download`):"]
        + [f"  {cmd:<{width}}  # {why}" if why else f"  {cmd}" for cmd, why in steps]
        + [f"The kernel writes /kaggle/working/{CSV_NAME}: the Output tab of "
           f"https://www.kaggle.com/code/{kernel_id} lists it. Once submitted, its score is on "
           f"https://www.kaggle.com/competitions/{COMPETITION}/submissions (My Submissions)."])


def shipped(args: argparse.Namespace) -> str:
    names = ", ".join(c.name for c in args.checkpoint)
    return names if len(args.checkpoint) == 1 else f"{names}, averaged"


def kaggle_root() -> Path:
    return Path(os.environ.get("KAGGLE_ROOT", "/kaggle"))


def environment() -> str:
    """What the kernel runs on: Kaggle's image decides these versions, not this project's pins."""
    import torch

    names = ("torch", "albumentations", "cv2", "numpy", "skimage", "pandas")
    versions = ", ".join(f"{n} {getattr(importlib.import_module(n), '__version__', '?')}" for n in names)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"python {sys.version.split()[0]}, {versions}; {device}"


def kernel_data(root: Path) -> CompetitionData:
    """The mounted competition, prepared into <root>/working/data, which then holds every part.

    The mount is read-only, so prepare_data extracts the inner zips into working/data; parts the
    mount holds extracted already are linked there, so later steps read one complete folder.
    """
    candidates = kaggle_data_dirs(root)
    source = next((d for d in candidates if has_competition_data(d)), None)
    if source is None:
        raise DataError(f"no {COMPETITION} data in {' or '.join(map(str, candidates))}; add the "
                        f"competition to the kernel (competition_sources in {KERNEL_METADATA})")
    work = root / "working" / "data"
    data = prepare_data(source, work_dir=work)
    parts = {TRAIN: data.train_pairs[0][0].parent, CLEAN: data.train_pairs[0][1].parent,
             TEST: data.test_images[0].parent if data.test_images else None,
             SAMPLE: data.sample_submission}
    work.mkdir(parents=True, exist_ok=True)
    for name, path in parts.items():
        if path is not None and not (work / name).exists():
            (work / name).symlink_to(path.resolve(), target_is_directory=path.is_dir())
    return prepare_data(work)


def find_checkpoint(inputs: Path, name: str, dataset: str) -> Path:
    """The shipped checkpoint under <root>/input, wherever Kaggle mounted the weights dataset. Only by
    its name (any suffix): another checkpoint there may be an older version's, the wrong weights."""
    files = sorted(Path(d) / f for d, _, names in os.walk(inputs, followlinks=True) for f in names)
    slug = dataset.split("/")[1]
    named = [p for p in files if p.name == name]
    picks = [p for p in named if slug in p.parts] or named
    if picks:
        return picks[0]
    ours = [p.name for p in files if slug in p.parts and p.name != DATASET_METADATA]
    if ours:   # attached, but not the version this kernel was built with
        weights = DEFAULT_OUT / WEIGHTS_DIR
        raise CheckpointError(f"no {name} in dataset {dataset}, which holds {', '.join(ours)}: an older "
                              f"version of it; run `kaggle datasets version -p {weights} -m "
                              f"\"new weights\"` where the kernel was built (the weights/ of its --out), "
                              f"wait for `kaggle datasets status {dataset}` to say ready, then run it again")
    seen = ", ".join(str(p) for p in files if p.suffix in (".pt", ".pth")) or "no .pt files"
    raise CheckpointError(f"no {name} under {inputs} (found: {seen}); attach dataset {dataset} "
                          f"(dataset_sources in {KERNEL_METADATA}; `kaggle datasets status {dataset}` "
                          f"must say ready)")


def run_kernel(plan: dict, log=print) -> int:
    """What the generated kernel script runs on Kaggle; returns the exit code.

    Reads the Kaggle root from $KAGGLE_ROOT (default /kaggle); trains (plan mode "train") or finds the
    shipped checkpoint (mode "checkpoint"), writes <root>/working/submission.csv with make_submission
    and validates it against the sample submission.
    """
    root = kaggle_root()
    log(environment())
    try:
        return submit_in_kernel(plan, root, log)
    finally:   # failed runs too: the extracted pages (~190 MB) would be the Output tab's bulk
        shutil.rmtree(root / "working" / "data", ignore_errors=True)


def submit_in_kernel(plan: dict, root: Path, log) -> int:
    """run_kernel's work: prepare the data, train or find the checkpoint, write and check the CSV."""
    working = root / "working"
    try:
        data = kernel_data(root)
        log(data.summary())
        if plan["mode"] == "train":
            cfg = parse_config(DenoiserConfig, DENOISER_PRESETS,
                               train_argv(plan["preset"], plan["train_args"], data.root, working / "models"))
            checkpoints = [train_denoiser(cfg, log=log)["best_path"]]
        else:
            checkpoints = [find_checkpoint(root / "input", n, plan["dataset"]) for n in plan["checkpoints"]]
            log("\n".join(f"checkpoint {c}" for c in checkpoints))
        # make_submission's defaults, as on a laptop: flip TTA whatever the model validated with (a run
        # trained with --no-tta to validate faster still gains its views in the consensus)
        predict = PredictConfig(checkpoint=checkpoints, data_dir=data.root, out=working / CSV_NAME)
        problems = check_config(predict)
        if problems:
            raise SubmissionError("\n  ".join(problems))
        out = run_submission(predict, log=log)
    except (DataError, CheckpointError, SubmissionError, OSError) as e:   # else: its traceback
        log(f"error: {e}")
        return 1
    report = validate_submission(out, sample=data.sample_submission)
    against = "the sample submission" if data.sample_submission else "nothing (no sample submission found)"
    if not report.ok:
        log(f"INVALID: {out}, {report.rows:,} rows, checked against {against}:"
            + "".join(f"\n  - {problem}" for problem in report.problems))
        return 1
    log(f"OK: {out} is a valid submission, {report.rows:,} rows, checked against {against}. Download it "
        f"from the kernel's Output tab or with `kaggle kernels output {plan['id']} -p {OUTPUT_DIR}/`.")
    return 0
