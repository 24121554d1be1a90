import numpy as np
import pytest

from llm_platform.trainer.data.pack import open_split, write_meta, write_split
from llm_platform.trainer.data.shards import TokenShards, write_shards


def _docs(n: int = 200, vocab: int = 70000, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, vocab, rng.integers(1, 300)).tolist() for _ in range(n)]


def test_sharded_split_reads_back_by_document_and_by_window(tmp_path):
    docs = _docs()
    counts = write_shards(tmp_path, "train", docs, eos_id=1, vocab_size=70001, shard_tokens=4096)
    shards = TokenShards(tmp_path, "train")
    assert len(shards.arrays) > 3 and shards.dtype == np.uint32
    assert counts == {"train_tokens": sum(len(d) + 1 for d in docs), "train_docs": len(docs)}
    assert all(shards.document(i).tolist() == docs[i] + [1] for i in range(len(docs)))
    flat = np.concatenate([np.asarray(d + [1]) for d in docs])
    boundary = int(shards.token_starts[1])
    assert shards.tokens(boundary - 50, 100).tolist() == flat[boundary - 50 : boundary + 50].tolist()


def test_no_document_straddles_two_shards(tmp_path):
    write_shards(tmp_path, "val", _docs(100, vocab=1000), eos_id=0, vocab_size=1000, shard_tokens=1000)
    shards = TokenShards(tmp_path, "val")
    for array, offsets in zip(shards.arrays, shards.offsets, strict=True):
        assert offsets[-1] == len(array)
        assert (array[offsets[1:] - 1] == 0).all()  # every document, and so every shard, ends with EOS
    assert shards.dtype == np.uint16


def test_out_of_range_reads_are_errors(tmp_path):
    write_shards(tmp_path, "train", _docs(5, vocab=1000), eos_id=0, vocab_size=1000)
    shards = TokenShards(tmp_path, "train")
    with pytest.raises(IndexError):
        shards.document(5)
    with pytest.raises(IndexError):
        shards.tokens(shards.num_tokens - 1, 2)
    with pytest.raises(FileNotFoundError, match="no sharded split 'val'"):
        TokenShards(tmp_path, "val")


def test_single_file_layout_still_reads_as_before(tmp_path):
    docs = _docs(10)
    counts = write_split(tmp_path, "train", docs, eos_id=1, vocab_size=70001)
    write_meta(tmp_path, 70001, 1, counts)
    assert open_split(tmp_path, "train").tolist() == [t for d in docs for t in d + [1]]
