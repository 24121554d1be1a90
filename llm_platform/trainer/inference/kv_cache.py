"""Static (preallocated) KV cache for ``Transformer`` generation.

    cache = StaticKVCache(model.config, batch_size=4, max_len=4096, device="cuda", dtype=torch.bfloat16)
    logits = model(prompt_ids, cache=cache, start_pos=0)
    logits = model(next_ids, cache=cache, start_pos=prompt_len)

Memory is allocated once. Per layer the cache holds
  * GQA: keys and values, [B, num_kv_heads, L, head_dim] each;
  * MLA: the compressed latent [B, 1, L, kv_lora_rank] and the shared RoPE key [B, 1, L, qk_rope_head_dim]
    (keys and values are re-expanded from the latent at every step; that is what makes the MLA cache small).
L is ``max_len`` for full-attention layers and ``sliding_window`` for windowed layers, which use a ring buffer:
memory for a windowed layer stays constant however long the sequence grows.

All sequences of a batch share positions (``start_pos``); every call must continue where the previous one ended.
"""

from __future__ import annotations

import torch

from llm_platform.trainer.model.config import ModelConfig


class StaticKVCache:
    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        max_len: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = max_len
        if config.attention == "mla":
            heads, widths = 1, (config.kv_lora_rank, config.qk_rope_head_dim)
        else:
            heads, widths = config.kv_heads, (config.head_size, config.head_size)
        self.first: list[torch.Tensor] = []
        self.second: list[torch.Tensor] = []
        self.slot_positions: list[torch.Tensor | None] = []  # ring buffers only: position held by each slot (-1 empty)
        for layer in range(config.n_layers):
            window = config.window_for_layer(layer)
            ring = window is not None and window < max_len
            length = window if ring else max_len
            self.first.append(torch.zeros(batch_size, heads, length, widths[0], device=device, dtype=dtype))
            self.second.append(torch.zeros(batch_size, heads, length, widths[1], device=device, dtype=dtype))
            self.slot_positions.append(torch.full((length,), -1, device=device, dtype=torch.long) if ring else None)
        self.seen = 0
        # Attention ignores key order unless a position bias (ALiBi) reads the positions.
        self.order_free = config.position_encoding != "alibi"

    def update(
        self, layer: int, first: torch.Tensor, second: torch.Tensor, start_pos: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Stores the new entries ([B, heads, T, width]) at positions start_pos.. and returns what the current tokens
        attend to: (keys-or-latent, values-or-rope-key, their absolute positions).

        Positions are None when the keys are exactly positions start_pos + T - len(keys) .. start_pos + T - 1 (or, for
        one decoded token, any order of them), which lets attention use the unmasked (bottom-right causal) kernels.
        """
        seq = first.shape[2]
        if start_pos + seq > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; got tokens up to {start_pos + seq}")
        if layer == 0:
            if start_pos != self.seen:
                raise ValueError(
                    f"start_pos={start_pos} but the cache holds positions 0..{self.seen - 1}; "
                    "continue from there or build a new cache"
                )
            self.seen = start_pos + seq
        slots = self.slot_positions[layer]
        if slots is None:
            end = start_pos + seq
            self.first[layer][:, :, start_pos:end] = first
            self.second[layer][:, :, start_pos:end] = second
            return self.first[layer][:, :, :end], self.second[layer][:, :, :end], None
        window = slots.shape[0]
        if seq == 1 and self.order_free:
            # Decoding: the token's slot holds the one position that just left its window, so write first and attend
            # to the filled slots without a mask.
            slot = start_pos % window
            self.first[layer][:, :, slot] = first[:, :, 0]
            self.second[layer][:, :, slot] = second[:, :, 0]
            slots[slot] = start_pos
            filled = min(start_pos + 1, window)
            return self.first[layer][:, :, :filled], self.second[layer][:, :, :filled], None
        new_positions = torch.arange(start_pos, start_pos + seq, device=first.device)
        # Ring buffer: attend to the window kept so far plus the new tokens, then keep the newest `window` of them.
        keys = torch.cat((self.first[layer], first), dim=2)
        values = torch.cat((self.second[layer], second), dim=2)
        positions = torch.cat((slots, new_positions))
        keep = slice(max(0, seq - window), seq)
        index = new_positions[keep] % window
        self.first[layer][:, :, index] = first[:, :, keep]
        self.second[layer][:, :, index] = second[:, :, keep]
        slots[index] = new_positions[keep]
        return keys, values, positions

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.first + self.second)

    def reorder(self, rows: torch.Tensor) -> None:
        """Row i now holds what row ``rows[i]`` held (beam search follows its surviving beams)."""
        for layer in range(len(self.first)):
            self.first[layer] = self.first[layer].index_select(0, rows)
            self.second[layer] = self.second[layer].index_select(0, rows)
