"""How counts read in logs and messages: shared by the training loop and the numpy-only library."""


def counted(n: int, noun: str, nouns: str = "") -> str:
    """`1 epoch`, `14 epochs` (nouns: the plural when not noun + s): logs read right at every count."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def listed(names: list[str], most: int = 3) -> str:
    """`a, b, c and 4 more`: the first `most` names, and how many more, for messages naming files or ids."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
