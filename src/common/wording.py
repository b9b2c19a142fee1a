"""How counts read in logs and messages: shared by the training loop and the numpy-only library."""


def counted(n: int, noun: str, nouns: str = "") -> str:
    """`1 epoch`, `14 epochs` (nouns: the plural when not noun + s): logs read right at every count."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"
