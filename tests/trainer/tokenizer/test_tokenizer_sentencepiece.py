import io

import pytest
import sentencepiece as spm

from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.train_sentencepiece import train_sentencepiece

TRAIN = ["flores200/dev/eng_Latn.dev", "flores200/dev/deu_Latn.dev", "flores200/dev/fra_Latn.dev"]
HELD_OUT = [
    "flores200/devtest/eng_Latn.devtest",
    "flores200/devtest/deu_Latn.devtest",
    "flores200/devtest/fra_Latn.devtest",
]
REFERENCE_OPTIONS = {
    "bpe": {"model_type": "bpe", "vocab_size": 2000},
    "unigram": {"model_type": "unigram", "vocab_size": 2000},
    "bpe-byte-fallback": {
        "model_type": "bpe",
        "vocab_size": 2000,
        "byte_fallback": True,
        "user_defined_symbols": ["<t>"],
    },
}


def sentencepiece_model(lines: list[str], **options) -> bytes:
    """Train with sentencepiece's own trainer, the way a user's existing `.model` was made."""
    model = io.BytesIO()
    sentences = (line.rstrip("\n") for line in lines if line.strip())
    spm.SentencePieceTrainer.train(sentence_iterator=sentences, model_writer=model, minloglevel=2, **options)
    return model.getvalue()


@pytest.fixture(scope="module", params=list(REFERENCE_OPTIONS))
def reference_model(request, shared_texts, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.model"
    path.write_bytes(sentencepiece_model(shared_texts(*TRAIN), **REFERENCE_OPTIONS[request.param]))
    return path


@pytest.fixture(scope="module")
def trained(shared_texts):
    return train_sentencepiece(shared_texts(*TRAIN), 1000)


def test_loaded_model_gives_sentencepiece_ids(reference_model, shared_texts):
    ours = Tokenizer.load(reference_model)
    reference = spm.SentencePieceProcessor(model_file=str(reference_model))
    texts = shared_texts(*HELD_OUT) + ["Grüße 你好 🤗 <t> <s> x"]
    assert ours.format == "sentencepiece"
    assert ours.encode_batch(texts) == reference.encode(texts)
    assert [ours.encode(t) for t in texts[:50]] == reference.encode(texts[:50])
    assert ours.decode(reference.encode(texts[0])) == reference.decode(reference.encode(texts[0]))


def test_loaded_model_knows_its_roles(reference_model):
    tok = Tokenizer.load(reference_model.parent)
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, None)
    hello = tok.encode("Hello")
    assert tok.encode("Hello", add_bos=True, add_eos=True) == [1, *hello, 2]


def test_trained_model_round_trips_unseen_scripts_through_byte_fallback(trained):
    text = "Grüße  aus Köln 12345 — 你好 🤗 שלום\n\ttab"
    ids = trained.encode(text)
    assert trained.unk_id not in ids
    assert trained.decode(ids) == text


def test_trained_model_saves_and_reloads_as_sentencepiece(trained, shared_texts, tmp_path):
    trained.save(tmp_path)
    reference = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    texts = shared_texts(*HELD_OUT)[:100]
    assert Tokenizer.load(tmp_path).encode_batch(texts) == reference.encode(texts) == trained.encode_batch(texts)


def test_role_tokens_are_matched_only_when_special_is_allowed(trained):
    user = trained.special_tokens["<|user|>"]
    assert user in trained.encode("<|user|>hi", allow_special=True)
    assert user not in trained.encode("<|user|>hi")


def test_chat_encodes_role_tokens_and_the_text_between_them(trained):
    s = trained.special_tokens
    chat = trained.encode_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    between = [*trained.encode("\nhi"), s["<|end|>"], *trained.encode("\n"), s["<|assistant|>"], *trained.encode("\n")]
    assert chat == [trained.bos_id, s["<|user|>"], *between]


def test_decode_keeps_control_tokens_unless_skipped(trained):
    ids = trained.encode("Hallo", add_bos=True, add_eos=True)
    assert trained.decode(ids) == "<|bos|>Hallo<|eos|>"
    assert trained.decode(ids, skip_special=True) == "Hallo"


def test_vocab_too_large_for_the_corpus_says_so():
    with pytest.raises(ValueError, match="Vocabulary size too high"):
        train_sentencepiece(["tiny corpus"], 5000)
