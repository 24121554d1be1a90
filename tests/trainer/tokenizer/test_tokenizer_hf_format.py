import json

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_platform.trainer.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tiny_hf(tiny_tokenizer, tmp_path_factory):
    """HF `tokenizers` reading our tokenizer.json, told to treat special-token strings as text like we do."""
    directory = tmp_path_factory.mktemp("tiny")
    tiny_tokenizer.save(directory)
    hf = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    hf.encode_special_tokens = True
    return hf


CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Grüße! 你好?"},
    {"role": "assistant", "content": "Hi."},
]


def test_save_writes_hf_tiktoken_and_config_files(tiny_tokenizer, tmp_path):
    names = sorted(p.name for p in tiny_tokenizer.save(tmp_path))
    assert names == ["tiktoken_config.json", "tokenizer.json", "tokenizer.tiktoken", "tokenizer_config.json"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|bos|>" and "chat_template" in config


def test_hf_tokenizers_gives_our_ids_on_shared_texts(shared_tokenizer, saved_shared_tokenizer, all_shared_texts):
    texts = all_shared_texts
    hf = tokenizers.Tokenizer.from_file(str(saved_shared_tokenizer / "tokenizer.json"))
    theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert shared_tokenizer.encode_batch(texts) == theirs


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_hf_tokenizers_gives_our_ids_on_random_unicode(tiny_tokenizer, tiny_hf, text):
    assert tiny_tokenizer.encode(text) == tiny_hf.encode(text, add_special_tokens=False).ids


def test_offsets_equal_hf_offsets(shared_tokenizer, saved_shared_tokenizer):
    hf = tokenizers.Tokenizer.from_file(str(saved_shared_tokenizer / "tokenizer.json"))
    text = "Grüße, 快速的 fox 👋🏽 said: ‘hi’"
    ids, offsets = shared_tokenizer.encode_with_offsets(text)
    encoding = hf.encode(text, add_special_tokens=False)
    assert (ids, offsets) == (encoding.ids, [tuple(o) for o in encoding.offsets])


def test_transformers_autotokenizer_gives_our_ids(shared_tokenizer, saved_shared_tokenizer, shared_texts):
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(saved_shared_tokenizer))
    texts = shared_texts("flores200/devtest/deu_Latn.devtest")[:200]
    assert auto(texts, add_special_tokens=False)["input_ids"] == shared_tokenizer.encode_batch(texts)
    assert auto("To be")["input_ids"] == shared_tokenizer.encode("To be", add_bos=True)
    assert auto.decode(shared_tokenizer.encode(texts[0])) == texts[0]


def test_transformers_chat_template_gives_our_chat_ids(tiny_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    tiny_tokenizer.save(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    theirs = auto.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert tiny_tokenizer.encode_chat(CHAT, add_generation_prompt=True) == list(theirs)


def test_loading_our_tokenizer_json_uses_tiktoken(tiny_tokenizer, tmp_path, inline_corpus):
    tiny_tokenizer.save(tmp_path)
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.format == "tiktoken"
    assert loaded.encode(inline_corpus[0]) == tiny_tokenizer.encode(inline_corpus[0])
    assert loaded.special_tokens == tiny_tokenizer.special_tokens


def test_a_tokenizer_json_that_tiktoken_cannot_reproduce_is_encoded_by_hf(tmp_path, inline_corpus):
    hf = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    hf.train_from_iterator(
        inline_corpus, tokenizers.trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"])
    )
    hf.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.load(tmp_path)
    assert loaded.format == "hf"
    assert loaded.encode("quick brown köln") == hf.encode("quick brown köln").ids


def test_hf_backend_treats_special_strings_as_text_unless_allowed(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    data = json.loads(tok.backend.to_hf(None).to_str())
    data["normalizer"] = {"type": "NFC"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    loaded = Tokenizer.load(tmp_path)
    assert loaded.format == "hf"
    assert loaded.encode("a<|eos|>", allow_special=True)[-1] == tok.eos_id
    assert tok.eos_id not in loaded.encode("a<|eos|>")


def test_saving_a_wordpiece_tokenizer_as_tiktoken_says_why_not(tmp_path, inline_corpus):
    hf = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    hf.train_from_iterator(
        inline_corpus, tokenizers.trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"])
    )
    hf.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="its model is WordPiece"):
        Tokenizer.load(tmp_path).save(tmp_path / "out", formats=["tiktoken"])


def test_broken_tokenizer_json_names_the_file_and_line(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{\n  "model": \n')
    with pytest.raises(ValueError, match=r"tokenizer\.json:3: not valid JSON"):
        Tokenizer.load(tmp_path)
