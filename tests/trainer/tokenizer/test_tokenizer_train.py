import pytest

from llm_platform.trainer.tokenizer import DEFAULT_SPECIAL_TOKENS, train_bpe, train_bpe_from_files


def test_vocab_has_exactly_the_requested_size(tiny_tokenizer):
    assert tiny_tokenizer.vocab_size == 600


def test_special_tokens_follow_the_learned_tokens(tiny_tokenizer):
    ids = [tiny_tokenizer.special_tokens[t] for t in DEFAULT_SPECIAL_TOKENS]
    first = min(tiny_tokenizer.special_tokens.values())
    assert ids == list(range(first, first + len(DEFAULT_SPECIAL_TOKENS)))
    assert (tiny_tokenizer.bos_id, tiny_tokenizer.eos_id, tiny_tokenizer.pad_id, tiny_tokenizer.unk_id) == tuple(
        ids[:4]
    )


def test_a_corpus_too_small_for_the_vocab_is_filled_with_reserved_tokens():
    tok = train_bpe(["ab ab ab"], 512)
    assert tok.vocab_size == 512
    assert "<|reserved_0|>" in tok.special_tokens
    assert max(tok.special_tokens.values()) == 511


def test_reserved_slots_are_added_after_named_specials(inline_corpus):
    tok = train_bpe(inline_corpus, 600, special_tokens=["<|eos|>"], num_reserved=3)
    assert list(tok.special_tokens)[:4] == ["<|eos|>", "<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>"]
    assert tok.bos_id is None and tok.eos_id == tok.special_tokens["<|eos|>"]


def test_learned_tokens_span_multibyte_text(tiny_tokenizer):
    ids = tiny_tokenizer.encode("Grüße 快速的棕色狐狸")
    assert len(ids) < len("Grüße 快速的棕色狐狸".encode())


def test_gpt2_pattern_keeps_digits_together():
    tok = train_bpe(["year 123456 " * 50], 300, special_tokens=[], pattern="gpt2")
    llama = train_bpe(["year 123456 " * 50], 300, special_tokens=[])
    assert tok.decode(tok.encode(" 123456")[-1:]) == " 123456"
    assert all(len(llama.decode([i]).strip()) <= 3 for i in llama.encode(" 123456"))


def test_vocab_smaller_than_bytes_plus_specials_is_rejected(inline_corpus):
    with pytest.raises(ValueError, match="at least 264"):
        train_bpe(inline_corpus, 260)


def test_duplicate_special_token_is_rejected(inline_corpus):
    with pytest.raises(ValueError, match=r"special_tokens\[1\]"):
        train_bpe(inline_corpus, 600, special_tokens=["<|x|>", "<|x|>"])


def test_non_string_text_is_rejected_with_its_index():
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        train_bpe(["fine", b"bytes"], 600)


def test_training_from_jsonl_uses_the_named_field(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"body": "hello hello hello"}\n{"body": "world world"}\n', encoding="utf-8")
    tok = train_bpe_from_files(path, 300, special_tokens=[], jsonl_field="body")
    assert tok.decode(tok.encode(" hello")) == " hello"
    assert len(tok.encode(" hello")) == 1
