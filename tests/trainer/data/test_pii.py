import random
import string

from llm_platform.trainer.data.document import Document
from llm_platform.trainer.data.pii import PIIConfig, PIIStep, find_pii, is_iban, luhn_valid, redact

from .conftest import squad_paragraphs


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError


def _card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = _luhn_complete(body)
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    sep = rng.choice(["", " ", "-"])
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return sep.join(groups)


def _iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("IT", 27)])
    bban_chars = string.digits if country in ("DE", "ES", "FR") else string.ascii_uppercase + string.digits
    bban = "".join(rng.choice(bban_chars) for _ in range(length - 4))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _email(rng: random.Random) -> str:
    user = rng.choice(["j.smith", "anna_lee", "m.mueller+news", "contact", "x99"]) + str(rng.randrange(100))
    return f"{user}@{rng.choice(['example.com', 'mail.co.uk', 'uni-bonn.de', 'corp.example.org'])}"


def _phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"+1 {d(3)} {d(3)} {d(4)}",
            f"({d(3)}) {d(3)}-{d(4)}",
            f"{d(3)}-{d(3)}-{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"+49 30 {d(7)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"030 {d(7)}",
            f"1-800-{d(3)}-{d(4)}",
        ]
    )


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.75:
        return ".".join(str(rng.randrange(256)) for _ in range(4))
    return rng.choice(
        ["2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"]
    )


def _secret(rng: random.Random) -> str:
    pick = lambda chars, n: "".join(rng.choice(chars) for _ in range(n))  # noqa: E731
    alnum = string.ascii_letters + string.digits
    return rng.choice(
        [
            "AKIA" + pick(string.ascii_uppercase + string.digits, 16),
            "ghp_" + pick(alnum, 36),
            "xoxb-" + pick(string.digits, 12) + "-" + pick(alnum, 24),
            "AIza" + pick(alnum + "_-", 35),
            "sk_live_" + pick(alnum, 24),
            "hf_" + pick(alnum, 34),
            "eyJ" + pick(alnum, 20) + ".eyJ" + pick(alnum, 30) + "." + pick(alnum + "_-", 43),
        ]
    )


PLANTERS = {"email": _email, "phone": _phone, "ip": _ip, "credit_card": _card, "iban": _iban, "secret": _secret}
COUNTS = {"email": 40, "phone": 40, "ip": 30, "credit_card": 35, "iban": 25, "secret": 30}  # 200 in all
TEMPLATES = [
    "For questions, reach {} during office hours.",
    "The record lists {} as the contact detail.",
    "According to the form, it was {}.",
    "Payment details ({}) were attached to the message.",
]


def _planted_documents(rng: random.Random) -> tuple[list[str], list[tuple[str, str]]]:
    items = [(kind, PLANTERS[kind](rng)) for kind, n in COUNTS.items() for _ in range(n)]
    rng.shuffle(items)
    paragraphs = squad_paragraphs(min_words=60)
    docs = []
    for i in range(0, len(items), 4):
        sentences = paragraphs[i // 4].split(". ")
        for _, value in items[i : i + 4]:
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(TEMPLATES).format(value).rstrip("."))
        docs.append(". ".join(sentences))
    return docs, items


def test_recall_on_200_planted_items_is_at_least_0_98():
    docs, items = _planted_documents(random.Random(7))
    assert len(items) == 200
    redacted = " ".join(redact(d, find_pii(d)) for d in docs)
    missed = [(kind, value) for kind, value in items if value in redacted]
    assert 1 - len(missed) / len(items) >= 0.98, missed
    for kind, placeholder in [("email", "<EMAIL>"), ("credit_card", "<CREDIT_CARD>"), ("iban", "<IBAN>")]:
        assert redacted.count(placeholder) >= COUNTS[kind] - 1


def test_luhn_invalid_card_numbers_are_never_redacted():
    rng = random.Random(3)
    invalid = [_card(rng, valid=False) for _ in range(100)]
    assert not any(luhn_valid(c.replace(" ", "").replace("-", "")) for c in invalid)
    text = " ".join(f"Order reference {c} was shipped." for c in invalid)
    spans = find_pii(text)
    assert [k for _, _, k in spans if k == "credit_card"] == []
    redacted = redact(text, spans)
    assert all(c in redacted for c in invalid)


def test_checksums_reject_lookalikes():
    assert is_iban("GB82 WEST 1234 5698 7654 32") and not is_iban("GB82 WEST 1234 5698 7654 33")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert find_pii("version 3.11.2 and 999.1.1.1 and 12:30:45") == []


def test_real_prose_is_left_almost_untouched():
    paragraphs = squad_paragraphs()[:2000]
    found = [(p[s:e], kind) for p in paragraphs for s, e, kind in find_pii(p)]
    assert len(found) <= 5, found


def test_step_replaces_with_configured_placeholders_and_counts_kinds():
    step = PIIStep(PIIConfig(kinds=("email",), placeholders={"email": "[email]"}))
    doc = step(Document("d", "Mail anna@example.com or call +1 415 555 0132.", "s"))
    assert doc.text == "Mail [email] or call +1 415 555 0132."
    assert doc.meta["pii"] == {"email": 1}
