"""Denoising Dirty Documents: data, models, training, tiled inference and submissions.

Commands (``python -m src.<verb>``) sit on top of library modules named by noun;
imports run one way, from the commands down to the library.
"""
