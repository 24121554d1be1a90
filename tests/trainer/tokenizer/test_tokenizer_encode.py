import pytest

from llm_platform.trainer.tokenizer import ChatTemplateError, Tokenizer, train_bpe


def test_parallel_batch_equals_one_by_one(tiny_tokenizer, inline_corpus):
    documents = ["".join(inline_corpus[i:] + inline_corpus[:i]) for i in range(24)]
    assert sum(map(len, documents)) > 1 << 16, "the batch must be large enough to take the threaded path"
    assert tiny_tokenizer.encode_batch(documents, num_threads=2) == [tiny_tokenizer.encode(d) for d in documents]


def test_bos_and_eos_frame_the_ids(tiny_tokenizer):
    ids = tiny_tokenizer.encode("hi")
    framed = tiny_tokenizer.encode_batch(["hi"], add_bos=True, add_eos=True)
    assert framed == [[tiny_tokenizer.bos_id, *ids, tiny_tokenizer.eos_id]]


def test_bos_without_a_bos_token_is_an_error(inline_corpus):
    tok = train_bpe(inline_corpus, 400, special_tokens=["<|eos|>"])
    with pytest.raises(ValueError, match="no bos token"):
        tok.encode("hi", add_bos=True)


def test_decode_can_skip_special_tokens(tiny_tokenizer):
    ids = tiny_tokenizer.encode("hi", add_bos=True, add_eos=True)
    assert tiny_tokenizer.decode(ids) == "<|bos|>hi<|eos|>"
    assert tiny_tokenizer.decode(ids, skip_special=True) == "hi"


def test_decode_rejects_ids_outside_the_vocabulary(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"ids\[1\] = 600"):
        tiny_tokenizer.decode([1, 600])


def test_offsets_cover_the_text_in_order(tiny_tokenizer):
    text = "Grüße, 你好 👋🏽!"
    ids, offsets = tiny_tokenizer.encode_with_offsets(text)
    assert len(ids) == len(offsets)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    assert all(a[0] <= b[0] for a, b in zip(offsets, offsets[1:], strict=False))


def test_chat_template_places_role_tokens(tiny_tokenizer):
    s = tiny_tokenizer.special_tokens
    ids = tiny_tokenizer.encode_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    expected = [tiny_tokenizer.bos_id, s["<|user|>"], *tiny_tokenizer.encode("\nhi"), s["<|end|>"]]
    expected += [*tiny_tokenizer.encode("\n"), s["<|assistant|>"], *tiny_tokenizer.encode("\n")]
    assert ids == expected


def test_chat_with_an_unknown_role_names_the_message(tiny_tokenizer):
    with pytest.raises(ChatTemplateError, match=r"messages\[1\]\.role"):
        tiny_tokenizer.encode_chat([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])


def test_chat_message_without_content_is_rejected(tiny_tokenizer):
    with pytest.raises(ChatTemplateError, match=r"messages\[0\]\.content"):
        tiny_tokenizer.encode_chat([{"role": "user"}])


def test_tokenizer_without_role_tokens_has_no_chat_template(inline_corpus):
    tok = train_bpe(inline_corpus, 400, special_tokens=["<|eos|>"])
    with pytest.raises(ValueError, match="no chat template"):
        tok.encode_chat([{"role": "user", "content": "hi"}])


def test_custom_chat_template_is_used_and_saved(inline_corpus, tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    tok = train_bpe(inline_corpus, 400, chat_template=template)
    assert tok.render_chat([{"role": "user", "content": "hi"}]) == "[user] hi<|eos|>"
    tok.save(tmp_path)
    assert Tokenizer.load(tmp_path).chat_template == template
