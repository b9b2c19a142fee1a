"""Kaggle: the kaggle package's API (credentials, download, submit) and the kernel bundle."""
