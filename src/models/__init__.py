"""Networks (the U-Net, the MNIST autoencoders), their registry, and checkpoints."""
