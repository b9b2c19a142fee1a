"""Pretrain an MNIST autoencoder whose encoder starts the denoiser.

    python -m src.pretrain_autoencoder --variant base|sparse|vae --data DIR_OR_CSV [--flag value ...]
    python -m src.train_denoiser --init-from models/mnist_base.pt      # then: transfer

--data is a folder with the four MNIST IDX files (raw or .gz), Digit Recognizer's train.csv, or a
folder holding it (see src.mnist.digits). Leaves `<models_dir>/mnist_<variant>_best.pt`, `_last.pt` and
`mnist_<variant>.pt` (the best weights, for --init-from), and in `<results_dir>/<variant>/`
(`<results_dir>/<name>/` for a --name of its own):
loss_curves.png, accuracy_curves.png, reconstructions_epoch1.png, reconstructions_last.png,
code_space.png, manifold.png (the decoded 2-D PCA plane of the code), samples.png (vae only),
metrics.json and metrics.md.

Definitions (the numbers of metrics.md and of the curves):
  reconstruction MSE   mean over test digits and pixels of (reconstruction - input)^2, pixels in
                       [0, 1]; the vae reconstructs from its posterior mean.
  pixel accuracy       share of pixels whose reconstruction falls on the same side of 0.5 as the
                       input pixel: (reconstruction > 0.5) == (input > 0.5). 87% of MNIST pixels
                       are <= 0.5 (81% are 0), so an all-black output already scores 0.87.
  objective            what the model is trained on (src.models.autoencoders.loss_terms): BCE per pixel,
                       + l1 * mean |code| (sparse) or + kl_weight * KL / 784 (vae).
  train curves         the objective averaged over each epoch's batches (train mode), and
                       MSE / accuracy of a fixed subset of `train_eval_digits` train digits in eval
                       mode; test curves use a fixed subset of `eval_digits` test digits (0 = all).
                       metrics.md scores the best checkpoint on every test digit.
  near-zero code       share of (test digit, code unit) entries with |code| < 0.01 (NEAR_ZERO); dead
                       units: units below that for every test digit. The vae's code is its mean mu.
  linear probe         accuracy on the test digits of a logistic regression (scikit-learn,
                       standardised codes) fitted on the codes of `probe_digits` train digits.
"""
from __future__ import annotations

import sys

from src.common.config import parse_config
from src.mnist.config import AUTOENCODER_PRESETS, AutoencoderConfig
from src.mnist.recipe import run
from src.training.loop import checkpoint_paths, run_training


def main(argv=None) -> int:
    cfg = parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, argv, description=__doc__.split("\n\n")[0],
                       prog="python -m src.pretrain_autoencoder")
    return run_training(run, cfg, command="src.pretrain_autoencoder", argv=argv, kind="autoencoder",
                        last_path=checkpoint_paths(cfg.models_dir, cfg.name or f"mnist_{cfg.variant}")[1])


if __name__ == "__main__":
    sys.exit(main())
