"""The decoder: token embedding, N pre-norm blocks (attention + MLP or MoE), final norm, LM head.

Usage
    model = Transformer(get_config("llama-tiny"))
    logits = model(input_ids)                                   # [B, T] -> [B, T, vocab]
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + model.aux_loss()

Generation with a KV cache (``llm_platform.trainer.inference.kv_cache.StaticKVCache``)
    cache = StaticKVCache(model.config, batch_size=B, max_len=L, dtype=..., device=...)
    logits = model(prompt, cache=cache, start_pos=0)            # prefill (may be split into chunks)
    logits = model(next_tokens, cache=cache, start_pos=prompt_len)  # one or more new tokens per call

MoE models
    ``model.aux_loss()``: coefficient-weighted load-balancing loss of the latest forward (0 for dense models); add it
    to the language-model loss. ``model.expert_load()``: tokens per expert per MoE layer (for metrics).
    ``model.update_router_biases()``: the auxiliary-loss-free balancing step; call it after each optimizer step.

Parallelism, precision, activation checkpointing and compilation are applied from outside (FSDP, autocast,
``train.distributed.apply_activation_checkpointing``, ``torch.compile(model)``); the block forward has no graph breaks
on dense layers and on MoE layers with a capacity factor.
"""

from __future__ import annotations

import torch
from torch import nn

from .alibi import alibi_slopes
from .attention import Attention, AttentionContext
from .config import ModelConfig
from .fused_ops import output_dtype
from .init import WeightInit, init_children
from .mla import LatentAttention
from .mlp import build_mlp
from .moe import MoE
from .norm import build_norm
from .rope import RotaryTable


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = build_norm(config, config.dim)
        self.attn = LatentAttention(config, layer) if config.attention == "mla" else Attention(config, layer)
        self.mlp_norm = build_norm(config, config.dim)
        self.mlp = MoE(config) if config.is_moe_layer(layer) else build_mlp(config, config.ffn_dim)

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        x, h = self.mlp_norm.add_and_norm(x, self.attn(self.attn_norm(x), ctx))
        return x + self.mlp(h)

    def init_weights(self, init: WeightInit) -> None:
        init_children(self, init)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = build_norm(config, config.dim)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        if config.position_encoding == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_heads), persistent=False)
        else:
            self.alibi_slopes = None
        self.rotary = None
        if config.position_encoding == "rope":
            rope_dim = config.qk_rope_head_dim if config.attention == "mla" else config.head_size
            self.rotary = RotaryTable(rope_dim, config.rope_theta, config.rope_scaling, config.max_seq_len)
        self.init_weights()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        cache=None,
        start_pos: int = 0,
        positions: torch.Tensor | None = None,
        attend=None,
    ) -> torch.Tensor:
        """Logits [B, T, vocab] for token ids [B, T].

        cache / start_pos: with a KV cache, the tokens sit at positions start_pos .. start_pos + T - 1 and attend to
        everything the cache holds before them; the cache is updated in place.
        positions: per-row positions [B, T] instead of start_pos, for a batch of sequences of different lengths
        (the inference engine's paged cache; its ``update`` returns each row's keys and their positions).
        attend: an attention function every layer uses instead of causal attention over the row
        (``AttentionContext.attend``): packed documents, or a context-parallel shard. Training forwards only.
        """
        hidden = self.hidden_states(input_ids, cache=cache, start_pos=start_pos, positions=positions, attend=attend)
        return self.lm_head(hidden)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        *,
        cache=None,
        start_pos: int = 0,
        positions: torch.Tensor | None = None,
        rope_end: int | None = None,
        attend=None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, T, dim] (what the LM head reads; reward and value heads read it too).

        rope_end: with ``positions``, one past their largest value when the caller knows it (``RotaryTable.at``).
        attend: see ``forward``; with it, ``positions`` only place the rotary embedding (e.g. restarting per
        document), and the attention function decides what each token sees."""
        x = self.embed_tokens(input_ids)
        if attend is not None and (cache is not None or self.alibi_slopes is not None):
            raise ValueError("document masks and context parallelism run training forwards of RoPE or NoPE models only")
        if positions is not None:
            rope = self.rotary.at(positions, x.dtype, rope_end) if self.rotary is not None else None
            ctx = AttentionContext(positions, rope, self.alibi_slopes, cache, start_pos, attend)
        else:
            ctx = self._context(input_ids.shape[1], start_pos, cache, x.dtype, x.device)
            ctx.attend = attend
        if self.config.residual_dtype == "autocast":
            # The residual stream in bf16 (ModelConfig); the RoPE table above keeps the parameters' precision.
            x = x.to(output_dtype(x))
        for block in self.layers:
            x = block(x, ctx)
        return self.norm(x)

    def _context(self, seq: int, start_pos: int, cache, dtype: torch.dtype, device: torch.device) -> AttentionContext:
        positions = torch.arange(start_pos, start_pos + seq, device=device)
        rope = self.rotary(start_pos, seq, dtype) if self.rotary is not None else None
        return AttentionContext(positions, rope, self.alibi_slopes, cache, start_pos)

    # ------------------------------------------------------------------ training hooks
    def moe_layers(self) -> list[tuple[int, MoE]]:
        """(layer index, MoE module) for every mixture-of-experts block."""
        return [(i, b.mlp) for i, b in enumerate(self.layers) if isinstance(b.mlp, MoE)]

    def aux_loss(self) -> torch.Tensor:
        """router_aux_loss_coef x the sum of the MoE layers' balancing losses from the latest forward (0 if dense)."""
        losses = [m.last_balance_loss for _, m in self.moe_layers() if m.last_balance_loss is not None]
        if not losses:
            return torch.zeros((), device=self.embed_tokens.weight.device)
        return self.config.router_aux_loss_coef * torch.stack(losses).sum()

    def expert_load(self) -> dict[int, torch.Tensor]:
        """Tokens each expert processed in the latest forward, per MoE layer index (for metrics and balancing)."""
        return {i: m.last_load for i, m in self.moe_layers() if m.last_load is not None}

    def update_router_biases(self, loads: dict[int, torch.Tensor] | None = None) -> None:
        """Auxiliary-loss-free balancing step (DeepSeek-V3); a no-op when router_bias_update_rate is 0.

        loads: tokens per expert per layer accumulated over the step (e.g. summed ``expert_load()`` over
        micro-batches); defaults to the latest forward's.
        """
        rate = self.config.router_bias_update_rate
        if rate <= 0:
            return
        loads = self.expert_load() if loads is None else loads
        for i, moe in self.moe_layers():
            if i in loads:
                moe.router.update_bias(loads[i], rate)

    # ------------------------------------------------------------------ init
    def materialize_non_persistent(self, device: torch.device | str) -> None:
        """Recomputes buffers that checkpoints do not hold, after building the model on the meta device."""
        if self.alibi_slopes is not None:
            self.alibi_slopes = alibi_slopes(self.config.n_heads).to(device)
        if self.rotary is not None:
            self.rotary.rebuild(device)

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Every module initialises its own weights (``model/init.py``): Normal(0, init_std) matrices, zero biases,
        unit norms, and init_std / sqrt(2 * n_layers) for the projections into the residual stream (GPT-2).

        seed: draw from a generator of this seed on the weights' device instead of torch's global one."""
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.embed_tokens.weight.device).manual_seed(seed)
        init = WeightInit.of(self.config.init_std, self.config.n_layers, generator)
        init.normal_(self.embed_tokens.weight)
        for block in self.layers:
            block.init_weights(init)
        self.norm.reset_parameters()
        if not self.config.tie_embeddings:
            init.normal_(self.lm_head.weight)
