"""Held-out pages: by page or by text (the pages whose clean twins are identical), and folds."""
from __future__ import annotations

import hashlib

import numpy as np


def text_groups(cleans: list[np.ndarray]) -> list[int]:
    """A group number per page, shared by pages whose clean twins are identical: the same text.

    The competition renders each text once and lays it over several backgrounds (the 115 public
    pairs hold 36 texts, 2-4 pages each), so a page's text is usually also on another page.
    """
    first: dict[tuple, int] = {}
    return [first.setdefault((c.shape, hashlib.sha1(np.ascontiguousarray(c).tobytes()).digest()), len(first))
            for c in cleans]


def split_pages(n: int, val_fraction: float = 0.15, folds: int = 0, fold: int = 0,
                seed: int = 0, groups: list | None = None) -> tuple[list[int], list[int]]:
    """Reproducible split of page indices into (train, validation), by page or by group.

    folds > 1: K-fold, validation is fold `fold` (folds cover every page once, for fold ensembles).
    Otherwise a random `val_fraction` share (at least one page when the share is positive).
    groups (a label per page, e.g. `text_groups`'s numbers): a group's pages stay on one side, and the
    share is reached with whole groups. None: every page is its own group (the split by page).
    """
    unit = "pages" if groups is None else "texts (--split-by text)"
    groups = list(range(n)) if groups is None else groups
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group numbers for {n} pages")
    members: dict[int, list[int]] = {}   # by first page: with a group per page, the order of the pages
    for page, group in enumerate(groups):
        members.setdefault(group, []).append(page)
    firsts = list(members)
    order = [members[firsts[g]] for g in np.random.default_rng(seed).permutation(len(firsts)).tolist()]
    if folds > 1:
        if not 0 <= fold < folds:
            raise ValueError(f"--fold {fold} is outside 0..{folds - 1}")
        if folds > len(order):   # else a fold past the last page or text holds out nothing
            raise ValueError(f"--folds {folds}: more than the {len(order)} {unit} to split")
        val = sum(order[fold::folds], [])
    elif val_fraction > 0:
        if not val_fraction < 1:
            raise ValueError(f"--val-fraction {val_fraction} must be below 1")
        want, val = max(1, round(n * val_fraction)), []
        for pages in order:
            if len(val) >= want:
                break
            val += pages
    else:
        val = []
    held = set(val)
    train = [i for i in range(n) if i not in held]
    if not train:
        raise ValueError(f"no training pages left out of {n} after the validation split")
    return train, sorted(val)
