"""Context parallelism: one long sequence shared by a group of processes, each holding a slice of its tokens.

Attention is the only operation that mixes tokens, so everything else runs on the local slice unchanged. For
attention every process gathers the keys and values of the whole sequence (they are small next to the activations:
2 x kv_heads x head_dim per token, a few hundred MB per layer at 128K tokens for a 1B model) and attends with its own
queries, the all-gather form of context parallelism Llama 3 was trained with. Unlike ring attention it needs no
merge of partial softmaxes, and each piece of work is one causal attention call on a key prefix, so the fused kernels
(cuDNN, flash) run as they do without parallelism.

Load balance: causal attention costs more for late queries than early ones, so the sequence is cut into 2 x P chunks
and process r holds chunks r and 2P - 1 - r (one early, one late); every process then does the same work.

Gradients: the gather's backward sums each process's gradient for every shard of keys and values and hands each
its own (a reduce-scatter). Each process's loss is the mean over its tokens; the data-parallel gradient average over
all processes (DDP, FSDP2) then gives the gradient of the whole sequence's mean loss, as the tokens per process are
equal. Evaluation (no gradients, no activations kept) runs whole sequences on every process, unsharded.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from llm_platform.trainer.model.kernels import attention


class _GatherShards(torch.autograd.Function):
    """[...] on each process -> [P, ...] stacked in group-rank order; backward: each process's share of the sum."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, group, size: int, rank: int) -> torch.Tensor:
        ctx.group, ctx.rank = group, rank
        local = local.contiguous()
        if dist.get_backend(group) == "nccl":
            out = local.new_empty((size, *local.shape))
            dist.all_gather_into_tensor(out, local, group=group)
            return out
        parts = [torch.empty_like(local) for _ in range(size)]
        dist.all_gather(parts, local, group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        if dist.get_backend(ctx.group) == "nccl":
            mine = grad.new_empty(grad.shape[1:])
            dist.reduce_scatter_tensor(mine, grad, group=ctx.group)
        else:  # gloo has no reduce-scatter
            dist.all_reduce(grad, group=ctx.group)
            mine = grad[ctx.rank]
        return mine, None, None, None


class ContextParallel:
    """This process's place in a context-parallel group of `size` processes (`group`: its process group, None for
    the whole world). `shard` cuts a batch into this process's tokens and gives what the model needs to attend
    across the whole sequence."""

    def __init__(self, group=None) -> None:
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    @classmethod
    def create(cls, size: int) -> ContextParallel:
        """Groups of `size` consecutive ranks (on one node they share the fastest links); every process must call
        this, as each group is created collectively. Rank r reads the data of data-parallel rank r // size."""
        world, rank = dist.get_world_size(), dist.get_rank()
        if world % size:
            raise ValueError(f"train.context_parallel: {size} does not divide the {world} processes")
        mine = None
        for first in range(0, world, size):
            group = dist.new_group(list(range(first, first + size)))
            if first <= rank < first + size:
                mine = group
        return cls(mine)

    def chunks(self, seq: int) -> tuple[int, int]:
        """The two chunk indices (of 2 x size) this process holds."""
        if seq % (2 * self.size):
            raise ValueError(
                f"train.context_parallel: the sequence of {seq} tokens does not split into 2 x {self.size} chunks"
            )
        return self.rank, 2 * self.size - 1 - self.rank

    def local_indices(self, seq: int, device: torch.device | None = None) -> torch.Tensor:
        """Positions in the whole sequence of this process's tokens, in local order."""
        chunk = seq // (2 * self.size)
        first, second = self.chunks(seq)
        return torch.cat(
            (
                torch.arange(first * chunk, (first + 1) * chunk, device=device),
                torch.arange(second * chunk, (second + 1) * chunk, device=device),
            )
        )

    def shard(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """This process's inputs and targets [B, T / size], and the model's keyword arguments to attend over the whole
        sequence (`positions`, `rope_end`, `attend`)."""
        seq = inputs.shape[1]
        index = self.local_indices(seq, inputs.device)
        positions = index.expand(inputs.shape[0], -1)
        return inputs[:, index], targets[:, index], {"positions": positions, "rope_end": seq, "attend": self.attend}

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """[B, H, T / size, D] local keys or values -> [B, H, T, D] of the whole sequence, in order."""
        stacked = _GatherShards.apply(local, self.group, self.size, self.rank)  # (P, B, H, 2C, D)
        first, second = stacked.chunk(2, dim=3)  # chunk r, and chunk 2P - 1 - r, of each process r
        return torch.cat((*first.unbind(0), *reversed(second.unbind(0))), dim=2)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, window: int | None = None
    ) -> torch.Tensor:
        """Causal attention of this process's queries [B, H, 2C, D] over the keys of the whole sequence."""
        chunk = q.shape[2] // 2
        keys, values = self.gather(k), self.gather(v)
        outs = []
        for part, index in zip(q.split(chunk, dim=2), self.chunks(2 * self.size * chunk), strict=True):
            end = (index + 1) * chunk  # a chunk's queries see every key up to their own chunk's end
            positions = torch.arange(index * chunk, end, device=q.device)
            outs.append(
                attention(part, keys[:, :, :end], values[:, :, :end], scale=scale, q_positions=positions, window=window)
            )
        return torch.cat(outs, dim=2)
