"""Parameter-tree layouts: leaf sizes that add up to (about) a given number of parameters."""

from __future__ import annotations

import math


def one_leaf(n: int) -> list[int]:
    """A single flat leaf of n parameters."""
    return [n]


def equal_leaves(n: int, leaves: int) -> list[int]:
    """``leaves`` leaves of n // leaves parameters each (the remainder goes to the first)."""
    size, rest = divmod(n, leaves)
    return [size + rest] + [size] * (leaves - 1)


def transformer(n: int, layers: int = 8) -> list[int]:
    """A transformer-like mix: big matrices, small biases and norm scales (16 leaves/layer).

    Per layer: q, k, v, o (d×d) with biases, an MLP d×4d, 4d×d with biases, two layer norms
    (scale and bias). Plus a token embedding of 8·d rows and a final layer norm. d is chosen so
    the total is close to n.
    """
    per_d2 = layers * 12 + 8  # d² terms: 4 attention + 8 MLP per layer, 8·d embedding rows
    d = max(4, int(math.sqrt(n / per_d2)))
    layer = [d * d] * 4 + [d] * 4 + [d * 4 * d, 4 * d, 4 * d * d, d] + [d] * 4
    sizes = [8 * d * d] + layer * layers + [d, d]
    sizes[0] += max(0, n - sum(sizes))  # top the embedding up to n
    return sizes


LAYOUTS = {
    "1 leaf": lambda n, leaves=None: one_leaf(n),
    "transformer": lambda n, leaves=None: transformer(n),
    "leaves": lambda n, leaves: equal_leaves(n, leaves),
}


def describe(layout: str, sizes: list[int]) -> str:
    """A short human label, e.g. '200 leaves, 50M params'."""
    total = sum(sizes)
    count = f"{total / 1e6:g}M" if total >= 1e6 else f"{total / 1e3:g}k"
    if layout == "transformer":
        return f"transformer ({len(sizes)} leaves), {count} params"
    noun = "leaf" if len(sizes) == 1 else "leaves"
    return f"{len(sizes)} {noun}, {count} params"
