"""A stage's console as read back from the store for the logs route: console.1.log then console.log, at most
`max_bytes` of them, newest first, on a real local store; a read that began mid-line drops that line."""

from __future__ import annotations

from llm_platform.services.stored_console import console_lines, stored_console
from llm_platform.storage import ArtifactStore


def test_both_files_are_read_in_order_within_the_byte_bound(tmp_path):
    store = ArtifactStore.open(str(tmp_path))
    assert stored_console(store, "data") is None  # the stage never ran here
    store.backend.put_bytes("data/live/console.1.log", b"one\ntwo\nthr")  # a rotation may split a line
    store.backend.put_bytes("data/live/console.log", b"ee\nfour\n")
    assert stored_console(store, "data") == (b"one\ntwo\nthree\nfour\n", False)
    assert console_lines(*stored_console(store, "data")) == ["one\n", "two\n", "three\n", "four\n"]
    assert stored_console(store, "data", max_bytes=12) == (b"two\nthree\nfour\n"[-12:], True)
    assert console_lines(*stored_console(store, "data", max_bytes=12)) == ["three\n", "four\n"]  # not "hree"
    assert stored_console(store, "data", max_bytes=4) == (b"our\n", True)  # console.log alone, and cut


def test_lines_are_decoded_without_refusal_and_tailed():
    assert console_lines(b"a\n\xff\xfeb\nlast without newline", False, tail=2) == ["\ufffd\ufffdb\n",
        "last without newline\n"]  # fmt: skip
    assert console_lines(b"a\nb\n", False, tail=0) == []
    assert console_lines(b"partial\nwhole\n", True) == ["whole\n"]
    assert console_lines(b"", False) == []
