"""Byte-level BPE ranks <-> HF `tokenizer.json`, so the HF file encodes exactly as tiktoken does on the same ranks.

tiktoken merges, inside each pre-token piece, the adjacent pair whose concatenation has the lowest rank, and takes a
piece that is itself in the vocabulary as one token. HF BPE merges pairs by their position in a merge list. The two
agree when the merge list holds every split of every token into two vocabulary tokens, ordered by the rank of the
result, and `ignore_merges` is on (whole pieces are looked up first). `hf_json_from_ranks` writes that, and
`ranks_from_hf_json` accepts exactly the files for which the reverse holds, so that tiktoken can encode them.
"""

from __future__ import annotations

import json
from typing import Any

from tokenizers import Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from llm_platform.trainer.tokenizer.byte_level import bytes_to_token_string, token_string_to_bytes
from llm_platform.trainer.tokenizer.patterns import GPT2


class NotTiktokenCompatible(ValueError):
    """The tokenizer.json cannot be encoded by tiktoken with identical ids; the reason says which part differs."""


def byte_level_pre_tokenizer(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """Every split of every multi-byte token into two vocabulary tokens, ordered by the rank of the token."""
    merges = []
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((bytes_to_token_string(left), bytes_to_token_string(right)))
    return merges


def hf_json_from_ranks(ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int], bos_token: str | None):
    """Build the HF tokenizer (a `tokenizers.Tokenizer`) that encodes like tiktoken on `ranks` + `pattern`.

    When `bos_token` is given, the post-processor prepends it, so `AutoTokenizer(text)` returns `[bos, ...]` the way
    Llama-style checkpoints expect; `add_special_tokens=False` gives the bare ids.
    """
    vocab = {bytes_to_token_string(token): rank for token, rank in ranks.items()}
    model = models.BPE(vocab=vocab, merges=merges_from_ranks(ranks), ignore_merges=True, fuse_unk=False)
    tokenizer = HFTokenizer(model)
    tokenizer.pre_tokenizer = byte_level_pre_tokenizer(pattern)
    tokenizer.decoder = decoders.ByteLevel()
    if bos_token is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A {bos_token} $B:1",
            special_tokens=[(bos_token, special_tokens[bos_token])],
        )
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = [
        {"id": token_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for token, token_id in sorted(special_tokens.items(), key=lambda item: item[1])
    ]  # fmt: skip
    return HFTokenizer.from_str(json.dumps(data))


def _pattern_of(pre_tokenizer: dict[str, Any] | None) -> str:
    """The regex of a byte-level pre-tokenizer that tiktoken can reproduce, or NotTiktokenCompatible."""
    if pre_tokenizer is None:
        raise NotTiktokenCompatible("it has no pre-tokenizer")
    steps = pre_tokenizer["pretokenizers"] if pre_tokenizer["type"] == "Sequence" else [pre_tokenizer]
    byte_level = steps[-1]
    if byte_level["type"] != "ByteLevel" or byte_level.get("add_prefix_space"):
        raise NotTiktokenCompatible("its pre-tokenizer does not end in ByteLevel(add_prefix_space=False)")
    if len(steps) == 1 and byte_level.get("use_regex", True):
        return GPT2
    if len(steps) != 2 or byte_level.get("use_regex", True):
        raise NotTiktokenCompatible("its pre-tokenizer is not one regex Split followed by ByteLevel(use_regex=False)")
    split = steps[0]
    if (
        split["type"] != "Split"
        or "Regex" not in split["pattern"]
        or split["behavior"] != "Isolated"
        or split["invert"]
    ):
        raise NotTiktokenCompatible("its pre-tokenizer's first step is not Split(Regex, behavior=Isolated)")
    return split["pattern"]["Regex"]


def ranks_from_hf_json(data: dict[str, Any]) -> tuple[dict[bytes, int], str, dict[str, int]]:
    """Return (ranks, pattern, special tokens) of a byte-level BPE tokenizer.json that tiktoken encodes identically."""
    model = data["model"]
    if model["type"] != "BPE":
        raise NotTiktokenCompatible(f"its model is {model['type']}, not BPE")
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise NotTiktokenCompatible("its BPE uses dropout or subword prefixes/suffixes")
    if model.get("byte_fallback") or not model.get("ignore_merges"):
        raise NotTiktokenCompatible("its BPE uses byte_fallback or does not set ignore_merges")
    if data.get("normalizer") is not None:
        raise NotTiktokenCompatible("it has a normalizer")
    decoder = data.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise NotTiktokenCompatible("its decoder is not ByteLevel")
    pattern = _pattern_of(data.get("pre_tokenizer"))
    added = data.get("added_tokens") or []
    if any(not token["special"] for token in added):
        raise NotTiktokenCompatible("it has added tokens that are not special")
    special_tokens = {token["content"]: token["id"] for token in added}
    special_ids = set(special_tokens.values())
    try:
        ranks = {token_string_to_bytes(t): i for t, i in model["vocab"].items() if i not in special_ids}
    except KeyError as err:
        raise NotTiktokenCompatible(str(err.args[0])) from None
    if len(ranks) != len(model["vocab"]) - len(special_ids & set(model["vocab"].values())):
        raise NotTiktokenCompatible("two vocabulary entries spell the same bytes")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise NotTiktokenCompatible("its vocabulary lacks some of the 256 single bytes")
    previous = -1
    merges = set()
    for merge in model["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = model["vocab"].get(left + right)
        if rank is None or rank < previous:
            raise NotTiktokenCompatible("its merge list is not ordered by the rank of the merged token")
        previous = rank
        merges.add((left, right))
    if merges != set(merges_from_ranks(ranks)):
        raise NotTiktokenCompatible("its merge list does not hold every split of every token into two tokens")
    return ranks, pattern, special_tokens
