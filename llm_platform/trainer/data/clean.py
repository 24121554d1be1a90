"""Text normalisation: Unicode form, control characters, whitespace at line ends, length bounds."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str, normalize: str = "NFC", strip_control: bool = True, max_chars: int | None = None) -> str:
    """The document's text normalised; pure, so the same document always cleans to the same text."""
    if normalize != "none":
        text = unicodedata.normalize(normalize, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_control:
        text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    if max_chars is not None:
        text = text[:max_chars]
    return text
