"""MNIST autoencoder pretraining: digits (IDX or Kaggle CSV), the recipe, its figures and scores."""
