import json

import pytest
import tiktoken
import tiktoken.load

from llm_platform.trainer.tokenizer import Tokenizer


def tiktoken_from_saved(directory) -> tiktoken.Encoding:
    """Build the encoding the way a tiktoken user would: tiktoken's own ranks loader plus our sidecar."""
    config = json.loads((directory / "tiktoken_config.json").read_text())
    ranks = tiktoken.load.load_tiktoken_bpe(str(directory / "tokenizer.tiktoken"))
    return tiktoken.Encoding(
        "ours", pat_str=config["pat_str"], mergeable_ranks=ranks, special_tokens=config["special_tokens"]
    )


def test_tiktoken_encoding_from_our_file_gives_our_ids(shared_tokenizer, saved_shared_tokenizer, all_shared_texts):
    encoding = tiktoken_from_saved(saved_shared_tokenizer)
    texts = all_shared_texts
    assert shared_tokenizer.encode_batch(texts) == encoding.encode_ordinary_batch(texts)


def test_special_tokens_are_text_unless_allowed(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    encoding = tiktoken_from_saved(tmp_path)
    text = "hi<|eos|>"
    assert tiny_tokenizer.encode(text, allow_special=True) == encoding.encode(text, allowed_special="all")
    assert tiny_tokenizer.encode(text) == encoding.encode(text, disallowed_special=())
    assert tiny_tokenizer.eos_id not in tiny_tokenizer.encode(text)


def test_bare_ranks_file_needs_a_pattern(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    (tmp_path / "tiktoken_config.json").unlink()
    with pytest.raises(ValueError, match="pass pattern="):
        Tokenizer.load(tmp_path / "tokenizer.tiktoken")
    loaded = Tokenizer.load(
        tmp_path / "tokenizer.tiktoken", pattern="llama3", special_tokens=tiny_tokenizer.special_tokens
    )
    assert loaded.encode("Grüße 快速") == tiny_tokenizer.encode("Grüße 快速")


def test_corrupt_ranks_file_names_the_line(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(ValueError, match="bad.tiktoken:2"):
        Tokenizer.load(path, pattern="gpt2")
