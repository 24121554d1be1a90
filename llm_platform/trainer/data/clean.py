"""Text cleaning: Unicode form, mojibake repair, control and invisible characters, boilerplate lines, length bounds.

Every function here is pure: the same document always cleans to the same text, on every machine and worker.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .document import Document, Drop

# C0 controls except tab and newline, DEL, and invisible format characters that only ever confuse a tokenizer:
# zero-width space, word joiner, byte-order mark, soft hyphen. (The zero-width joiner stays: emoji sequences need it.)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2060\ufeff\u00ad]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def _cp1252_byte_table() -> dict[str, int]:
    """Character -> byte for text that was UTF-8 but got decoded as Windows-1252 (latin-1 where 1252 has a hole)."""
    table = {}
    for byte in range(0x80, 0x100):
        try:
            char = bytes([byte]).decode("cp1252")
        except UnicodeDecodeError:
            char = chr(byte)
        table[char] = byte
    return table


_TO_BYTE = _cp1252_byte_table()
_CONT = "[" + re.escape("".join(c for c, b in _TO_BYTE.items() if 0x80 <= b <= 0xBF)) + "]"
_C1 = "[" + re.escape("".join(c for c, b in _TO_BYTE.items() if 0x80 <= b <= 0x9F)) + "]"
# A run of UTF-8 sequences (lead byte + continuation bytes) as they look after a wrong cp1252 decode: "Ã©", "â€™".
# Three- and four-byte sequences must show a continuation byte from 0x80-0x9F (€, ™, ‚, Ÿ...): correct text puts
# "é\xa0»" (French: accent, no-break space, guillemet) together, which would otherwise re-decode as "頻".
_MOJIBAKE = re.compile(
    f"(?:[\u00c2-\u00df]{_CONT}"
    f"|[\u00e0-\u00ef](?:{_C1}{_CONT}|{_CONT}{_C1})"
    f"|[\u00f0-\u00f4](?={_CONT}{{0,2}}{_C1}){_CONT}{{3}})+"
)


def _redecode(match: re.Match[str]) -> str:
    run = match.group(0)
    try:
        return bytes(_TO_BYTE[c] for c in run).decode("utf-8")
    except UnicodeDecodeError:  # not a valid UTF-8 sequence after all: leave the text as written
        return run


def fix_mojibake(text: str) -> str:
    """Repair UTF-8 text that was decoded as Windows-1252 or latin-1 ("cafÃ©" -> "café", "itâ€™s" -> "it’s").

    Only runs that re-encode to valid UTF-8 are changed, so correct accented text is left alone; applied twice it
    also undoes a double wrong decode. Western text, punctuation and emoji are covered; CJK text decoded wrongly
    is not (its bytes look too much like correct accented Latin text)."""
    for _ in range(2):
        fixed = _MOJIBAKE.sub(_redecode, text)
        if fixed == text:
            break
        text = fixed
    return text


# Lines of site chrome rather than content. Matched only on short lines, so prose that mentions cookies stays.
BOILERPLATE_PATTERNS = (
    r"\b(accept|allow|use[sd]?|enable) (all )?cookies\b",
    r"\bcookie (policy|settings|preferences|consent)\b",
    r"\bprivacy (policy|notice|settings)\b",
    r"\bterms (of (use|service)|and conditions)\b",
    r"\ball rights reserved\b",
    r"^(©|copyright\b)",
    r"\bskip to (main )?content\b",
    r"^(back to top|read more|click here|load more|show more)\b",
    r"\bsubscribe (to )?(our )?(newsletter|channel|mailing list)\b",
    r"^(sign (in|up)|log ?in|log ?out|register)\b",
    r"\b(share (on|this|via)|follow us)\b",
    r"\b(enable|requires?) javascript\b|\bjavascript (is )?(disabled|required)\b",
    r"^powered by\b",
)
BOILERPLATE_MAX_WORDS = 12
_BOILERPLATE = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE_PATTERNS), re.IGNORECASE)


def remove_boilerplate_lines(text: str, max_words: int = BOILERPLATE_MAX_WORDS) -> str:
    """The text without short lines that match a boilerplate pattern (cookie banners, footers, share buttons)."""
    if not _BOILERPLATE.search(text):
        return text
    kept = [
        line for line in text.split("\n") if not (len(line.split()) <= max_words and _BOILERPLATE.search(line.strip()))
    ]
    return "\n".join(kept)


def clean_text(
    text: str,
    normalize: str = "NFC",
    strip_control: bool = True,
    max_chars: int | None = None,
    fix_encoding: bool = False,
    boilerplate: bool = False,
) -> str:
    """The document's text normalised: Unicode form, line endings, control characters, blank-line runs, length."""
    if fix_encoding:
        text = fix_mojibake(text)
    if normalize != "none":
        text = unicodedata.normalize(normalize, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_control:
        text = _CONTROL.sub("", text)
    if boilerplate:
        text = remove_boilerplate_lines(text)
    if " \n" in text or "\t\n" in text:  # substring tests are far cheaper than a multiline regex scan
        text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    text = text.strip()
    if max_chars is not None:
        text = text[:max_chars]
    return text


@dataclass(frozen=True)
class CleanConfig:
    """How every document is cleaned (the `clean:` section of a data stage)."""

    normalize: str = "NFC"
    strip_control: bool = True
    fix_mojibake: bool = False
    boilerplate: bool = False
    min_chars: int = 32
    max_chars: int | None = None


class CleanStep:
    """Cleans the text, then drops what is shorter than `min_chars` (reason `too_short`)."""

    name = "clean"

    def __init__(self, config: CleanConfig = CleanConfig()):
        self.config = config

    def __call__(self, doc: Document) -> Document | Drop:
        c = self.config
        text = clean_text(doc.text, c.normalize, c.strip_control, c.max_chars, c.fix_mojibake, c.boilerplate)
        if len(text) < c.min_chars:
            return Drop("too_short")
        return doc.with_text(text)
