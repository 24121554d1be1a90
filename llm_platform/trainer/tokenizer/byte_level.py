"""The byte-level alphabet: how GPT-2 style tokenizers spell raw bytes as printable characters.

HF `tokenizer.json` stores byte-level tokens as strings in which each byte is one visible character (space is `Ġ`),
while tiktoken stores the raw bytes. These two functions are the bridge between the two files.
"""

from __future__ import annotations

from functools import cache


@cache
def byte_to_char() -> dict[int, str]:
    """Map each byte to the character HF byte-level BPE uses for it.

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, soft hyphen...) are shifted to
    code points 256 and up, in byte order, so every byte has a visible, unambiguous spelling.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


@cache
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


def bytes_to_token_string(data: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in data)


def token_string_to_bytes(token: str) -> bytes:
    """Inverse of `bytes_to_token_string`; raises KeyError naming the character when `token` is not byte-level."""
    table = char_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError as err:
        raise KeyError(f"token {token!r} holds {err.args[0]!r}, which is not a byte-level character") from None
