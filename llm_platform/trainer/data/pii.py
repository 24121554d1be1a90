"""Personal data and secrets replaced by placeholders: emails, phone numbers, IP addresses, payment cards, IBANs,
API keys, tokens and private keys.

Patterns find candidates; checksums and parsers confirm them, so a number only becomes `<CREDIT_CARD>` when it passes
the Luhn check and carries a card network's prefix, an IBAN only when its mod-97 check holds for its country's length,
and an IP only when `ipaddress` parses it. Overlapping finds are resolved in favour of the earlier, then longer one.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .document import Document

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "secret": "<SECRET>",
}
KINDS = tuple(PLACEHOLDERS)

_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international: +44 20 7946 0958
    r"|(?:1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (415) 555-0132
    r"|(?:1([ .-]))?\d{3}([ .-])\d{3}\2\d{4}"  # 415-555-0132, 415.555.0132, 1 800 555 0199
    r"|0\d{1,4}[ /-]\d{3,4}[ -]?\d{3,4}"  # national trunk prefix: 030 1234567, 020 7946 0958
    r")(?![\w-])(?![ .]\d)"  # not a slice of a longer run of digit groups (a card, an account number)
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<!\w)(?<!\d\.){_OCTET}(?:\.{_OCTET}){{3}}(?!\w)(?!\.\d)")  # a full stop may follow
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_SECRETS = [
    re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----"),
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),  # GitHub tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),  # Slack tokens
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}\b"),  # Stripe keys
    re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),  # OpenAI-style keys
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
]
# `password = "..."`, `api_key: ...`: the value after a secret-sounding name (only the value is replaced)
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd|private[_-]?key|"
    r"aws_secret_access_key|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9_\-/+=.!@#$%^&*]{8,})"
)

# IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries in its last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_network(digits: str) -> bool:
    """Whether the number starts with a prefix a card network issues (Visa, Mastercard, Amex, Discover, JCB,
    Diners, UnionPay, Maestro), at a length that network uses."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)
        or (two in (34, 37) and n == 15)
        or ((digits.startswith("6011") or two == 65 or 644 <= int(digits[:3]) <= 649) and n in (16, 19))
        or (3528 <= four <= 3589 and 16 <= n <= 19)
        or ((two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305) and 14 <= n <= 19)
        or (two == 62 and 16 <= n <= 19)
        or (two in (50, 56, 57, 58, 67) and 12 <= n <= 19)
    )


def is_card_number(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and _card_network(digits) and luhn_valid(digits)


def is_iban(candidate: str) -> bool:
    """ISO 13616: the country's length, then mod 97 of the rearranged number (letters as 10..35) equals 1."""
    iban = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    return 7 <= digits <= 15


Span = tuple[int, int, str]  # start, end, kind


def _finds(
    pattern: re.Pattern[str], kind: str, text: str, valid: Callable[[str], bool] | None = None, group: int | str = 0
) -> Iterable[Span]:
    for m in pattern.finditer(text):
        if valid is None or valid(m.group(group)):
            yield m.start(group), m.end(group), kind


def _trimmed_finds(pattern: re.Pattern[str], kind: str, text: str, valid: Callable[[str], bool]) -> Iterable[Span]:
    """Like `_finds`, but a greedy match that fails validation is retried without its trailing groups: the pattern
    may have swallowed a following number ("4111 1111 1111 1111 2027") or word ("DE89 ... 00 IS")."""
    for m in pattern.finditer(text):
        candidate = m.group(0)
        cuts = [len(candidate)] + [i for i in range(len(candidate) - 1, 12, -1) if candidate[i] in " -"]
        for cut in cuts:
            if valid(candidate[:cut]):
                yield m.start(), m.start() + cut, kind
                break


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Span]:
    """Non-overlapping (start, end, kind) spans of personal data and secrets in `text`, in order."""
    kinds = set(kinds)
    spans: list[Span] = []
    has_digit = _DIGIT.search(text) is not None
    if "secret" in kinds:
        for pattern in _SECRETS:
            spans += _finds(pattern, "secret", text)
        spans += _finds(_ASSIGNED_SECRET, "secret", text, group="value")
    if "email" in kinds and "@" in text:
        spans += _finds(_EMAIL, "email", text)
    if has_digit:
        if "iban" in kinds:
            spans += _trimmed_finds(_IBAN, "iban", text, is_iban)
        if "credit_card" in kinds:
            spans += _trimmed_finds(_CARD, "credit_card", text, is_card_number)
        if "ip" in kinds:
            spans += _finds(_IPV4, "ip", text, _is_ip)
        if "phone" in kinds:
            spans += _finds(_PHONE, "phone", text, _is_phone)
    if "ip" in kinds and ("::" in text or text.count(":") >= 7):
        spans += _finds(_IPV6, "ip", text, _is_ip)
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    resolved: list[Span] = []
    for span in spans:
        if not resolved or span[0] >= resolved[-1][1]:
            resolved.append(span)
    return resolved


def redact(text: str, spans: list[Span], placeholders: dict[str, str] = PLACEHOLDERS) -> str:
    parts, last = [], 0
    for start, end, kind in spans:
        parts += [text[last:start], placeholders[kind]]
        last = end
    parts.append(text[last:])
    return "".join(parts)


@dataclass(frozen=True)
class PIIConfig:
    """The `pii` section: which kinds to replace, and with what (a placeholder such as `<EMAIL>` per kind)."""

    kinds: tuple[str, ...] = KINDS
    placeholders: dict[str, str] | None = None


class PIIStep:
    """Replaces personal data with placeholders; never drops a document. Counts per kind land in `meta['pii']`."""

    name = "pii"

    def __init__(self, config: PIIConfig = PIIConfig()):
        unknown = sorted(set(config.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"pii.kinds: unknown {', '.join(unknown)}; choose from {', '.join(KINDS)}")
        self.kinds = tuple(config.kinds)
        self.placeholders = {**PLACEHOLDERS, **(config.placeholders or {})}

    def __call__(self, doc: Document) -> Document:
        spans = find_pii(doc.text, self.kinds)
        if not spans:
            return doc
        counts = Counter(kind for _, _, kind in spans)
        return doc.with_text(redact(doc.text, spans, self.placeholders)).with_meta(pii=dict(counts))
