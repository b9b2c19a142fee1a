"""Scores of an MNIST autoencoder: reconstruction, pixel accuracy, code sparsity, a linear probe."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from src.common.files import atomic_write
from src.models.autoencoders import loss_terms

NEAR_ZERO = 1e-2


@torch.no_grad()
def run_model(model, images: np.ndarray, device, l1: float, kl_weight: float, batch: int = 500) -> dict:
    """Eval-mode pass over images (N, H, W): reconstructions (N, H, W), codes (N, code), mean objective."""
    model.eval()
    recons, codes, loss = [], [], 0.0
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).unsqueeze(1).to(device)
        recon, aux = model(x, with_code=True)
        loss += loss_terms(x, recon, aux, l1, kl_weight)["loss"].item() * len(x)
        recons.append(recon[:, 0].float().cpu().numpy())
        codes.append(aux["code"].float().cpu().numpy())
    return {"recon": np.concatenate(recons), "code": np.concatenate(codes),
            "loss": loss / max(len(images), 1)}


def pixel_scores(images: np.ndarray, recons: np.ndarray) -> dict:
    """Reconstruction MSE (float64) and pixel accuracy (same side of 0.5), images (N, H, W) in [0, 1]."""
    diff = recons.astype(np.float64) - images
    return {"mse": float(np.mean(diff ** 2)), "acc": float(np.mean((recons > 0.5) == (images > 0.5)))}


def code_sparsity(codes: np.ndarray, threshold: float = NEAR_ZERO) -> dict:
    """Share of near-zero code entries and the number of units near zero for every digit."""
    small = np.abs(codes) < threshold
    return {"code_near_zero": float(small.mean()), "dead_units": int(small.all(axis=0).sum())}


def linear_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on standardised codes (how linearly digits separate)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_labels)) < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(train_codes, train_labels)
    return float(probe.score(test_codes, test_labels))


def write_metrics(metrics: dict, out_dir: Path) -> None:
    atomic_write(out_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))
    header = ("| variant | test MSE | pixel accuracy | near-zero code | dead units | linear probe | "
              "epochs (best) | train time |\n|---|---|---|---|---|---|---|---|\n")
    atomic_write(out_dir / "metrics.md", lambda tmp: tmp.write_text(header + metrics_row(metrics) + "\n"))


def metrics_row(m: dict) -> str:
    return (f"| {m['variant']} | {m['test_mse']:.5f} | {m['test_acc']:.4f} | {m['code_near_zero']:.1%} | "
            f"{m['dead_units']}/{m['code_units']} | {m['probe_acc']:.4f} | "
            f"{m['epochs']} ({m['best_epoch']}) | "
            f"{m['train_s']:.0f} s |")


def summary_line(m: dict, out_dir: Path) -> str:
    return (f"{m['variant']}: test MSE {m['test_mse']:.5f}, pixel accuracy {m['test_acc']:.4f}, "
            f"near-zero code {m['code_near_zero']:.1%} ({m['dead_units']}/{m['code_units']} dead units), "
            f"linear probe {m['probe_acc']:.4f}, best epoch {m['best_epoch']}/{m['epochs']}, "
            f"{m['wall_s']:.0f} s -> {m['checkpoint']}, {out_dir}/")
