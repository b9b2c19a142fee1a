"""The competition's files, page I/O, splits, and the synthetic embedded default."""
