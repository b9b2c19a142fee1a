"""Whole pages through the model (tiles, flips, shifts, ensembles), consensus, metrics."""
