"""Stop strings over streamed text: cut at the first stop, and hold back a tail that may still become one.

A stop string can span tokens ("\\n\\n" from "\\n" + "\\n"), so the text is checked as a whole after each token, and
while the text ends with the beginning of a stop string that tail is not shown yet: a stop string never reaches the
caller, not even in part. A trailing U+FFFD (a multi-byte character still incomplete) is held back the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str], search_from: int = 0) -> tuple[int, str] | None:
    """(index, stop string) of the earliest stop string starting at or after ``search_from``, or None."""
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop, search_from)
        if index >= 0 and (best is None or index < best[0]):
            best = (index, stop)
    return best


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters to withhold: the longest tail that is a proper prefix of a stop string, or
    an incomplete character."""
    hold = 1 if text.endswith("\ufffd") else 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    return hold
