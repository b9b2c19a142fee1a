"""The denoiser recipe: load and split the pages, fit the U-Net on patches, validate whole pages
through the submission's own inference, and report the held-out RMSE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.common.config import check_config
from src.common.runtime import main_first, setup_runtime
from src.common.wording import counted
from src.data.competition import load_pairs
from src.data.degraded import degrade_for_training, degraded_pairs, sources_digest
from src.data.splits import split_pages, text_groups
from src.data.synthetic import prepare_or_synthesize
from src.inference.consensus import clean_together, describe
from src.inference.metrics import error_breakdown, pooled_rmse, psnr_from_rmse
from src.inference.scale import training_text_size
from src.inference.tiles import predict_page
from src.models.checkpoints import init_encoder_from, load_checkpoint, model_from_checkpoint
from src.models.registry import build_model, count_parameters
from src.training.config import DenoiserConfig
from src.training.loop import checkpoint_paths, fit, schedule_text
from src.training.losses import LOSSES
from src.training.patches import PatchDataset
from src.training.plots import plot_before_after, plot_training_curves


def make_evaluate(pages, cfg, rt):
    """Validation = the submission's tiled inference, scored by the competition's RMSE."""
    def evaluate(model):
        if not pages:
            return {}
        preds = [predict_page(model, x, tile=cfg.tile, overlap=cfg.overlap, tta=cfg.tta, device=rt.device,
                              amp=cfg.amp) for x, _ in pages]
        return {"score": pooled_rmse(zip(preds, (y for _, y in pages)))}
    return evaluate


def report(best_path: Path, history: list[dict], val_pages, names, cfg, rt) -> str:
    """Plots next to the checkpoint (the curves of every epoch of `history`, not only those up to the best)
    and a one-line summary with RMSE, PSNR and SSIM of the best model."""
    from skimage.metrics import structural_similarity

    ckpt = load_checkpoint(best_path, "denoiser")
    plot_training_curves(history, best_path.with_name(f"{cfg.name}_curves.png"))
    if not val_pages:
        return f"trained on every pair (no validation) -> {best_path}"
    model = model_from_checkpoint(ckpt, best_path).to(rt.device)
    preds, views = zip(*(predict_page(model, x, tile=cfg.tile, overlap=cfg.overlap, tta=cfg.tta,
                                      device=rt.device, amp=cfg.amp, views=True) for x, _ in val_pages))
    err = pooled_rmse(zip(preds, (y for _, y in val_pages)))
    ssim = np.mean([structural_similarity(p, y, data_range=1.0) for p, (_, y) in zip(preds, val_pages)])
    worst = int(np.argmax([np.mean((p - y) ** 2) for p, (_, y) in zip(preds, val_pages)]))
    plot_before_after(val_pages[worst][0], preds[worst], val_pages[worst][1],
                      best_path.with_name(f"{cfg.name}_val_page.png"),
                      title=f"validation page {names[worst]}")
    where = error_breakdown(zip(preds, (y for _, y in val_pages)))
    cleaned, groups = clean_together(preds, views, [x for x, _ in val_pages])   # as make_submission does
    together = pooled_rmse(zip(cleaned, (y for _, y in val_pages)))
    return (f"best validation RMSE {err:.5f} (PSNR {psnr_from_rmse(err):.2f} dB, "
            f"SSIM {ssim:.4f}) on {len(val_pages)} pages, epoch {ckpt['epoch']} -> {best_path}\n"
            f"with make_submission's consensus (but without its shifted views"
            f"{'' if cfg.tta else ' and flip TTA'}): "
            f"{together:.5f} ({describe(groups)})\n"
            f"squared error by clean-pixel class (share of error / of pixels): "
            + ", ".join(f"{k} {e:.0%}/{n:.1%}" for k, (n, e, _) in where.items()))


def split_train_val(cfg: DenoiserConfig, texts: list[int]) -> tuple[list[int], list[int]]:
    """The (training, held-out) page indices of a run, from its config and the pages' `text_groups`."""
    return split_pages(len(texts), cfg.val_fraction, cfg.folds, cfg.fold, cfg.split_seed,
                       texts if cfg.split_by == "text" else None)


def split_text(texts: list[int], train_idx: list[int], val_idx: list[int], split_by: str) -> str:
    """How many held-out pages show a text the model trains on (Kaggle's test pages show none)."""
    trained = {texts[i] for i in train_idx}
    seen = sum(texts[i] in trained for i in val_idx)
    hint = "" if not seen or split_by != "page" else (
        "; Kaggle's test texts are new, which does not change the RMSE in the package's measurements "
        "(docs/consensus.md; --split-by text holds out whole texts)")
    held = counted(len({texts[i] for i in val_idx}), "text")
    return (f"split by {split_by}: {counted(len(val_idx), 'validation page')} of {held}, {seen} of them "
            f"also on training pages{hint}")


def degraded_set(cfg: DenoiserConfig, train_pages: list, log=print, degrade=degrade_for_training) -> list:
    """The pages `--degraded` mixes in: the training split's clean pages and rendered text pages, degraded
    by `degrade` (Augraphy's training pipeline), read from (or built once into) --degraded-dir; none when
    no epoch's share is above 0."""
    shares = cfg.degraded_shares()
    if max(shares) <= 0:
        return []
    pairs = degraded_pairs(Path(cfg.degraded_dir), cfg.degraded_pages, cfg.degraded_seed,
                           [y for _, y in train_pages], log=log, degrade=degrade)
    late = (f" for {cfg.degraded_epochs} epochs, then {cfg.degraded_late:.0%}"
            if cfg.degraded_epochs and cfg.degraded_epochs < cfg.epochs else "")
    log(f"{cfg.degraded:.0%} of the patches{late} from {counted(len(pairs), 'degraded page')}")
    return pairs


def run(cfg: DenoiserConfig, log=print, degrade=degrade_for_training) -> dict:
    """Train as `cfg` says; `degrade` (clean uint8 page, rng -> degraded uint8 page) makes the degraded
    pages, so that a benchmark can train on faults of its own."""
    check_config(cfg)
    rt = setup_runtime(cfg.device, cfg.threads)
    say = log if rt.is_main else lambda *_: None
    data = main_first(rt, lambda: prepare_or_synthesize(Path(cfg.data_dir), log=say))
    pages = load_pairs(data.train_pairs)
    texts = text_groups([y for _, y in pages])
    train_idx, val_idx = split_train_val(cfg, texts)
    train_pages, val_pages = [pages[i] for i in train_idx], [pages[i] for i in val_idx]
    model_config = cfg.model_config()
    torch.manual_seed(cfg.seed)  # same initial weights on every rank and every run with this seed
    model = build_model(cfg.model, **model_config)
    last = checkpoint_paths(cfg.models_dir, cfg.name)[1]
    # --data-dir may move between runs, the pages may not: a run resumed on others (the synthetic default
    # for a forgotten --data-dir) would be neither run
    pages_id = sources_digest([y for _, y in pages])[:16]
    if cfg.resume and last.exists() and load_checkpoint(last, "denoiser").get("pages", pages_id) != pages_id:
        raise ValueError(f"--resume: {last} was trained on other pages than the {len(pages)} pairs of "
                         f"{data.root}; resume with the --data-dir it was trained on, or give a new --name")
    if cfg.init_from and cfg.resume and last.exists():   # its weights would be replaced by the checkpoint's
        say(f"--init-from {cfg.init_from} not read: --resume continues from {last}")
    elif cfg.init_from:
        init_encoder_from(model, Path(cfg.init_from), log=say)
    if rt.is_main:
        log(f"{cfg.model} ({count_parameters(model) / 1e6:.2f} M parameters) on {rt.device}"
            f"{f' x{rt.world}' if rt.distributed else ''}: {counted(len(train_pages), 'training page')}, "
            f"{counted(len(val_pages), 'validation page')}, {schedule_text(cfg, 'patch', 'patches')} of "
            f"{cfg.patch_size}px")
        if val_idx:
            log(split_text(texts, train_idx, val_idx, cfg.split_by))
    extra = main_first(rt, lambda: degraded_set(cfg, train_pages, say, degrade))
    dataset = PatchDataset(train_pages, cfg.patch_size, cfg.steps_per_epoch * cfg.batch_size,
                           cfg.photometric, cfg.seed, rt.rank, cfg.flips, extra, cfg.degraded_shares(),
                           cfg.zoom, cfg.zoom_max)
    # the text size the model learns: `denoise` brings other pages' text to it
    size = training_text_size([y for _, y in train_pages])
    result = fit(model, dataset, make_evaluate(val_pages, cfg, rt), cfg, rt, kind="denoiser",
                 model_name=cfg.model, model_config=model_config, loss_fn=LOSSES[cfg.loss], log=log,
                 describe={"pages": pages_id, **({} if size is None else {"text_size": size})})
    if rt.is_main:
        names = [data.train_pairs[i][0].stem for i in val_idx]
        result["summary"] = report(result["best_path"], result["history"], val_pages, names, cfg, rt)
        log(result["summary"])
    return result
