"""Special tokens: the ids that text can never produce by accident, and the roles (bos, eos, pad, unk) they play."""

from __future__ import annotations

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
CHAT_ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
DEFAULT_SPECIAL_TOKENS = [BOS, EOS, PAD, UNK, *CHAT_ROLE_TOKENS]
DEFAULT_ROLES = {"bos": BOS, "eos": EOS, "pad": PAD, "unk": UNK}


def reserved_tokens(count: int, start: int = 0) -> list[str]:
    """Placeholder specials (`<|reserved_N|>`) that keep ids free for tokens a later fine-tune will need."""
    if count < 0:
        raise ValueError(f"number of reserved special tokens must be >= 0, got {count}")
    return [f"<|reserved_{i}|>" for i in range(start, start + count)]


def check_special_tokens(tokens: list[str]) -> list[str]:
    """Reject empty and duplicate specials, which would make ids ambiguous; return the list unchanged."""
    seen: set[str] = set()
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise ValueError(f"special_tokens[{i}] must be a non-empty string, got {token!r}")
        if token in seen:
            raise ValueError(f"special_tokens[{i}] = {token!r} is listed twice; each special token needs one id")
        seen.add(token)
    return tokens


def roles_for(special_tokens: list[str] | dict[str, int]) -> dict[str, str]:
    """The default roles that are present among `special_tokens` (so a vocab without `<|pad|>` has no pad role)."""
    return {role: token for role, token in DEFAULT_ROLES.items() if token in special_tokens}
