import numpy as np
import pytest

from llm_platform.trainer.data.batching import (
    IGNORE_INDEX,
    Example,
    FinetuneLoader,
    best_fit_decreasing,
    collate_packed,
    length_batches,
    pack_row,
)


def _examples(n: int = 300, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for length in rng.integers(4, 200, n):
        prompt = int(rng.integers(1, length))
        out.append(Example(rng.integers(1, 1000, length).tolist(), [i >= prompt for i in range(length)]))
    return out


def test_packed_row_marks_every_example_boundary():
    a, b = Example([5, 6, 7], [False, True, True]), Example([8, 9])
    row = pack_row([a, b], seq_len=8, pad_id=0)
    assert row["input_ids"].tolist() == [5, 6, 7, 8, 9, 0, 0, 0]
    assert row["labels"].tolist() == [IGNORE_INDEX, 6, 7, 8, 9, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert row["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    assert row["document_ids"].tolist() == [1, 1, 1, 2, 2, 0, 0, 0]
    assert row["cu_seqlens"].tolist() == [0, 3, 5, 8]


def test_collated_cu_seqlens_index_the_flattened_batch():
    rows = [pack_row([Example([1, 2, 3])], 4, 0), pack_row([Example([4, 5]), Example([6, 7])], 4, 0)]
    batch = collate_packed(rows)
    assert batch["cu_seqlens"].tolist() == [0, 3, 4, 6, 8]
    assert int(batch["max_seqlen"]) == 3
    flat = batch["input_ids"].reshape(-1)
    assert [flat[s:e].tolist() for s, e in zip(batch["cu_seqlens"][:-1], batch["cu_seqlens"][1:], strict=True)] == [
        [1, 2, 3], [0], [4, 5], [6, 7]
    ]  # fmt: skip


def test_best_fit_packs_tightly_and_never_overflows():
    lengths = [len(e) for e in _examples(2000)]
    bins = best_fit_decreasing(lengths, 1024)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 1024 for b in bins)
    assert sum(lengths) / (len(bins) * 1024) > 0.98


def test_dynamic_batches_respect_the_token_budget_and_cover_everything():
    lengths = [len(e) for e in _examples(1000)]
    batches = length_batches(lengths, max_tokens=2048, rng=np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) * max(lengths[i] for i in b) <= 2048 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert sum(lengths) / padded > 0.9  # similar lengths batched together


@pytest.mark.parametrize("mode", ["pack", "dynamic"])
@pytest.mark.parametrize("prefetch", [0, 3])
def test_loader_resumes_exactly_where_it_stopped(mode, prefetch):
    """Stop at batch k (here inside the second epoch), restore the state, and the batches continue identically."""
    examples = _examples()
    settings = {"mode": mode, "seq_len": 512, "batch_size": 4, "max_tokens": 1024, "seed": 3, "epochs": 3}
    reference = list(FinetuneLoader(examples, **settings, prefetch=prefetch))
    per_epoch = FinetuneLoader(examples, **settings).batches_per_epoch()
    k = per_epoch + 5
    loader = FinetuneLoader(examples, **settings, prefetch=prefetch)
    for i, _ in enumerate(loader):
        if i + 1 == k:
            break
    state = loader.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 5)
    resumed = FinetuneLoader(examples, **settings, prefetch=prefetch)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(reference) - k
    for got, want in zip(rest, reference[k:], strict=True):
        assert got.keys() == want.keys() and all(np.array_equal(got[key], want[key]) for key in got)


def test_epochs_are_shuffled_differently_and_reproducibly():
    examples = _examples()
    first = [b["input_ids"] for b in FinetuneLoader(examples, seq_len=512, batch_size=4, seed=1, epochs=2)]
    again = [b["input_ids"] for b in FinetuneLoader(examples, seq_len=512, batch_size=4, seed=1, epochs=2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    half = len(first) // 2
    assert not all(np.array_equal(a, b) for a, b in zip(first[:half], first[half:], strict=True))


def test_resuming_with_other_settings_is_refused():
    loader = FinetuneLoader(_examples(20), seed=1)
    with pytest.raises(ValueError, match="batch order would differ"):
        loader.load_state_dict({"epoch": 0, "batch": 2, "seed": 2, "mode": "pack"})
