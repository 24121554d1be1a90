import pytest

from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.stats import compression_stats
from llm_platform.trainer.tokenizer.train_sentencepiece import train_sentencepiece


def test_byte_level_bpe_has_no_unknown_bytes(tiny_tokenizer):
    stats = compression_stats(tiny_tokenizer, ["Grüße 你好 🤗", "plain words here"])
    assert stats.unknown_bytes == 0 and stats.byte_fallback_tokens == 0
    assert stats.words == 6
    assert stats.bytes_per_token == pytest.approx(stats.bytes / stats.tokens)


def test_sentencepiece_without_byte_fallback_counts_unknown_bytes(inline_corpus, tmp_path):
    latin = [line for line in inline_corpus if line.isascii()]
    tok = train_sentencepiece(latin, 200, byte_fallback=False, character_coverage=1.0)
    tok.save(tmp_path)
    stats = compression_stats(Tokenizer.load(tmp_path), ["hello 你好"])
    assert stats.unknown_bytes == len("你好".encode())
    assert stats.unknown_byte_rate == pytest.approx(6 / len("hello 你好".encode()))


def test_byte_fallback_pieces_are_counted(inline_corpus):
    latin = [line for line in inline_corpus if line.isascii()]
    tok = train_sentencepiece(latin, 320, character_coverage=1.0)
    stats = compression_stats(tok, ["你"])
    assert stats.byte_fallback_tokens == 3 and stats.unknown_bytes == 0


def test_more_merges_compress_better(shared_tokenizer, tiny_tokenizer, held_out_texts):
    texts = held_out_texts[:2000]
    assert (
        compression_stats(shared_tokenizer, texts).bytes_per_token
        > compression_stats(tiny_tokenizer, texts).bytes_per_token
    )
