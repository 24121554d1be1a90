import numpy as np
import pytest
import torch

from llm_platform.trainer.data.loader import PretrainLoader, eval_batches

TOKENS = np.arange(1001, dtype=np.uint32)  # token i == position i: windows are easy to read back


def test_every_window_is_read_once_per_epoch():
    loader = PretrainLoader(TOKENS, seq_len=10, micro_batch=5, grad_accum=2)
    assert loader.n_windows == 100
    firsts = [int(w[0]) for _ in range(10) for mb in loader.next_step() for w in mb]
    assert sorted(firsts) == list(range(0, 1000, 10))
    assert loader.epoch == 1.0


def test_windows_overlap_by_one_so_each_token_is_a_target_once():
    (batch,) = PretrainLoader(TOKENS, seq_len=10, micro_batch=1).next_step()
    start = int(batch[0, 0])
    assert batch.tolist() == [list(range(start, start + 11))]
    assert batch.dtype == torch.int64


def test_ranks_split_the_global_batch_of_a_single_process():
    single = PretrainLoader(TOKENS, 10, micro_batch=4, seed=3)
    ranks = [PretrainLoader(TOKENS, 10, micro_batch=2, rank=r, world_size=2, seed=3) for r in range(2)]
    for _ in range(30):  # crosses epoch boundaries
        (expected,) = single.next_step()
        got = torch.cat([r.next_step()[0] for r in ranks])
        assert torch.equal(got, expected)


def test_resuming_from_state_reads_the_same_samples_at_another_world_size():
    first = PretrainLoader(TOKENS, 10, micro_batch=2, rank=0, world_size=2, seed=1)
    for _ in range(7):
        first.next_step()
    resumed = PretrainLoader(TOKENS, 10, micro_batch=4, seed=1)
    resumed.load_state_dict(first.state_dict())
    reference = PretrainLoader(TOKENS, 10, micro_batch=4, seed=1)
    for _ in range(7):
        reference.next_step()
    assert torch.equal(resumed.next_step()[0], reference.next_step()[0])


def test_resuming_with_other_data_settings_is_refused():
    state = PretrainLoader(TOKENS, 10, micro_batch=2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seq_len=10, seed=1.*seq_len=20"):
        PretrainLoader(TOKENS, 20, micro_batch=2, seed=1).load_state_dict(state)


def test_seeds_give_different_orders():
    a = PretrainLoader(TOKENS, 10, micro_batch=8, seed=0).next_step()[0]
    b = PretrainLoader(TOKENS, 10, micro_batch=8, seed=1).next_step()[0]
    assert not torch.equal(a, b)


def test_too_short_a_split_names_the_setting_to_change():
    with pytest.raises(ValueError, match="train.seq_len"):
        PretrainLoader(TOKENS[:5], seq_len=10, micro_batch=1)


def test_eval_windows_are_the_same_whatever_the_world_size():
    single = torch.cat(list(eval_batches(TOKENS, 10, batch_size=3, n_batches=4)))
    split = [torch.cat(list(eval_batches(TOKENS, 10, 3, 4, rank=r, world_size=2))) for r in range(2)]
    assert sorted(single[:, 0].tolist()) == sorted(torch.cat(split)[:, 0].tolist())
    assert single[:, 0].tolist() == list(range(0, 120, 10))
