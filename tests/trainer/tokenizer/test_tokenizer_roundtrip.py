from hypothesis import given, settings
from hypothesis import strategies as st

SAMPLES = [
    "emoji 👩‍👩‍👧‍👦 🏳️‍🌈 🤗",
    "中文、日本語のテキスト、한국어",
    "עברית ומספרים 123 وعربي",
    "control \x00\x01\x1b[31m\t\r\n\x7f\u200b\u202e",
    "<|eos|> looks special but is text",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_inverts_encode_for_any_unicode(tiny_tokenizer, text):
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(), max_size=8))
def test_batch_decode_inverts_batch_encode(tiny_tokenizer, texts):
    assert tiny_tokenizer.decode_batch(tiny_tokenizer.encode_batch(texts)) == texts


def test_emoji_cjk_rtl_and_control_characters_round_trip(tiny_tokenizer):
    for text in SAMPLES:
        assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text
