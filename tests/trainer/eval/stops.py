"""Shared by the generation tests."""

from __future__ import annotations


def first_stop(text: str) -> str:
    """Two printable ASCII characters that first occur partway into `text`: a stop string certain to fire there."""
    return next(
        pair
        for i in range(1, len(text) - 1)
        if (pair := text[i : i + 2]).isascii() and pair.isprintable() and text.index(pair) == i
    )
