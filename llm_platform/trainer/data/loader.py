"""The pretraining loader: shuffled fixed-length windows of a packed token array, addressed by a global sample index.

The token array is cut into windows of `seq_len + 1` tokens that overlap by one (the last target of a window is the
first input of the next), so every token is a target exactly once per epoch. Sample `i` of the whole run is window
`permutation(seed, epoch)[i % n_windows]` with `epoch = i // n_windows`: a pure function of `(seed, i)`.

So the loader's whole state is one integer, the next sample index. Each optimizer step takes the next
`micro_batch * grad_accum * world_size` samples, and rank `r` reads its contiguous slice of them. A run resumed
from a checkpoint, at this or any other world size, reads exactly the samples the original run would have read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class PretrainLoader:
    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        micro_batch: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.tokens = tokens
        self.seq_len = seq_len
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(
                f"the training split holds {len(tokens)} tokens, too few for one window of seq_len + 1 = "
                f"{seq_len + 1}; lower train.seq_len or add data"
            )
        self.micro_batch = micro_batch
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.device = torch.device(device)
        self.sample = 0
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    @property
    def samples_per_step(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def epoch(self) -> float:
        return self.sample / self.n_windows

    def window_starts(self, first: int, count: int) -> np.ndarray:
        """Start offsets (in tokens) of global samples first .. first + count - 1."""
        starts = np.empty(count, dtype=np.int64)
        for j, i in enumerate(range(first, first + count)):
            epoch, pos = divmod(i, self.n_windows)
            if epoch != self._epoch:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
                self._epoch = epoch
            starts[j] = self._order[pos] * self.seq_len
        return starts

    def next_step(self) -> list[torch.Tensor]:
        """This rank's `grad_accum` micro-batches of the next optimizer step, each [micro_batch, seq_len + 1] int64."""
        per_rank = self.micro_batch * self.grad_accum
        starts = self.window_starts(self.sample + self.rank * per_rank, per_rank)
        self.sample += self.samples_per_step
        window = self.seq_len + 1
        batch = np.stack([self.tokens[s : s + window] for s in starts]).astype(np.int64)
        ids = torch.from_numpy(batch)
        if self.device.type == "cuda":
            ids = ids.pin_memory().to(self.device, non_blocking=True)
        return list(ids.split(self.micro_batch))

    def state_dict(self) -> dict[str, int]:
        return {"sample": self.sample, "seed": self.seed, "seq_len": self.seq_len}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seq_len"] != self.seq_len or state["seed"] != self.seed:
            raise ValueError(
                f"checkpointed loader used seq_len={state['seq_len']}, seed={state['seed']}; this run uses "
                f"seq_len={self.seq_len}, seed={self.seed}: resuming would read different data"
            )
        self.sample = int(state["sample"])


def eval_batches(
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    n_batches: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """The first `n_batches * batch_size` non-overlapping windows of a split, in order, dealt out across ranks:
    the same validation tokens every time. Every rank gets as many windows (and batches) as the others, since under
    FSDP each forward is a collective; so when the windows do not divide evenly, the last few are left out."""
    n_windows = (len(tokens) - 1) // seq_len
    wanted = min(n_windows, n_batches * batch_size)
    wanted -= wanted % world_size
    if wanted < 1:
        raise ValueError(
            f"the validation split holds {len(tokens)} tokens, too few for one window of {seq_len + 1} per process"
        )
    mine = np.arange(rank, wanted, world_size)
    for first in range(0, len(mine), batch_size):
        starts = mine[first : first + batch_size] * seq_len
        yield torch.from_numpy(np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64))
