"""The one training loop, losses, CUDA graphs, patch sampling, and the denoiser recipe."""
