"""The lowest-latency batch-1 decoding path: static shapes, fused projections, compiled blocks, one CUDA graph a step.

    decoder = FastDecoder(model, max_len=512)                 # model on CUDA in bf16 (or CPU: plain eager)
    new_ids = decoder.generate(prompt_ids, max_new_tokens=256, temperature=0)
    logits = decoder.logits(torch.tensor([[5, 6, 7]]), start_pos=12)   # [3, vocab], for speculative decoding

Why it is fast (at batch 1 a decode step reads every weight once, so its floor is weight bytes / bandwidth; what
stands between eager PyTorch and that floor is hundreds of small kernel launches and Python per token):
  * every shape is static: the KV cache has ``max_len`` slots per layer and a step attends to all of them under a
    position mask (key position <= query position), so one step is the same computation at every position;
  * q/k/v and gate/up projections run as one matmul each (``fuse_linears``), for float, INT8 and INT4 layers alike;
  * on CUDA each block is compiled by ``torch.compile`` (regional compilation: the blocks share one graph, so the
    compile costs one block, not n_layers), fusing norms, RoPE, the cache write and the SwiGLU product; prompts run
    eagerly, in chunks (``prefill``);
  * the whole step (embedding, blocks, head, sampling, writing the token and advancing the position) is captured
    once in a CUDA graph and replayed, with the sequence kept on the device: no host sync per token (end-of-sequence
    is checked every ``sync_every`` tokens).
  * attention for one query reads the cache of each KV head once for its whole query group (the g query heads of a
    KV head are the rows of one SDPA call), and for long caches can split the keys into chunks that run in parallel
    and are merged by their log-sum-exp (flash decoding, ``split_kv_attention``).

On CPU (and with ``compile=False, cuda_graph=False``) the same step runs eagerly, which is what CI tests against the
model's own forward. Supported: dense GQA/MHA/MQA models with RoPE (or no positions), qk-norm, biases and sliding
windows; MLA, ALiBi and MoE layers raise (use ``generate`` or the engine).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from llm_platform.trainer.model.mlp import ACTIVATIONS, GatedMLP
from llm_platform.trainer.model.transformer import Transformer

from .quantize import Int4Linear, Int8Linear
from .sampling import filter_logits

SPLIT_KV_MIN_LEN = 4096  # caches at least this long use split-KV attention under attention="auto"


# --------------------------------------------------------------------------- pure pieces
def fuse_linears(layers: list[nn.Module]) -> nn.Module:
    """One layer computing the concatenation of ``layers``' outputs (same input, same kind), so that q/k/v or
    gate/up cost one matmul. Float layers keep no copy: their weights become views into the fused weight."""
    kinds = {type(layer) for layer in layers}
    if len(kinds) != 1:
        raise ValueError(f"cannot fuse layers of different kinds {sorted(k.__name__ for k in kinds)}")
    first = layers[0]
    has_bias = first.bias is not None
    if any((layer.bias is not None) != has_bias for layer in layers):
        raise ValueError("cannot fuse layers where only some have a bias")
    bias = torch.cat([layer.bias.detach() for layer in layers]) if has_bias else None
    out = sum(layer.out_features for layer in layers)
    if isinstance(first, nn.Linear):
        w = first.weight
        fused = nn.Linear(first.in_features, out, bias=has_bias, device=w.device, dtype=w.dtype)
        fused.requires_grad_(False)
        fused.weight.copy_(torch.cat([layer.weight.detach() for layer in layers]))
        if has_bias:
            fused.bias.copy_(bias)
        start = 0
        for layer in layers:  # the originals now read the fused storage: no second copy of the weights
            end = start + layer.out_features
            layer.weight = nn.Parameter(fused.weight[start:end], requires_grad=False)
            start = end
        return fused
    if isinstance(first, Int8Linear):
        fused = Int8Linear(first.in_features, out, has_bias, first.scales.dtype, first.weight.device)
        fused.weight.copy_(torch.cat([layer.weight for layer in layers]))
        fused.scales.copy_(torch.cat([layer.scales for layer in layers]))
    elif isinstance(first, Int4Linear):
        if len({layer.group_size for layer in layers}) != 1:
            raise ValueError("cannot fuse INT4 layers with different group sizes")
        fused = Int4Linear(first.in_features, out, has_bias, first.group_size, first.scales.dtype, first.packed.device)
        fused.packed.copy_(torch.cat([layer.packed for layer in layers]))
        fused.scales.copy_(torch.cat([layer.scales for layer in layers]))
        fused.offsets.copy_(torch.cat([layer.offsets for layer in layers]))
        fused.prepare_kernel()
    else:
        raise ValueError(f"cannot fuse {type(first).__name__} layers")
    if has_bias:
        fused.bias.copy_(bias)
    return fused


def split_kv_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scale: float, splits: int
) -> torch.Tensor:
    """Flash-decoding attention: the L keys are cut into ``splits`` chunks, each chunk's softmax-weighted values and
    log-sum-exp are computed independently (in parallel on a GPU), then merged exactly.

    q [B, H, M, D]; k, v [B, H, L, D] with L a multiple of ``splits``; allowed [M, L] bool. Returns [B, H, M, D].
    A chunk with no allowed key contributes nothing (its weight is exp(-1e30 - max) = 0)."""
    batch, heads, rows, dim = q.shape
    length = k.shape[2]
    chunk = length // splits
    kc = k.view(batch, heads, splits, chunk, dim)  # (B, H, S, C, D)
    vc = v.view(batch, heads, splits, chunk, dim)
    scores = torch.einsum("bhmd,bhscd->bhsmc", q, kc).float() * scale  # (B, H, S, M, C)
    mask = allowed.view(rows, splits, chunk).transpose(0, 1)  # (S, M, C)
    scores = scores.masked_fill(~mask, float("-inf"))
    peak = scores.amax(-1, keepdim=True).clamp(min=-1e30)  # (B, H, S, M, 1)
    weights = (scores - peak).exp()
    partial = torch.einsum("bhsmc,bhscd->bhsmd", weights.to(v.dtype), vc).float()  # (B, H, S, M, D)
    total = weights.sum(-1, keepdim=True)
    rescale = (peak - peak.amax(2, keepdim=True)).exp()  # each chunk relative to the global maximum
    out = (partial * rescale).sum(2) / (total * rescale).sum(2)
    return out.to(q.dtype)


def sample_from_logits(
    logits: torch.Tensor, noise: torch.Tensor | None, temperature: float, top_k: int | None, top_p: float | None
) -> torch.Tensor:
    """Token ids [N] from logits [N, V]: argmax when temperature is 0, else a sample of softmax(filtered logits / T)
    drawn as argmax(p / E) with E ~ Exp(1) given in ``noise`` (the exponential race: P(argmax = i) = p_i), which
    needs no host sync and lets a captured graph take fresh randomness through a buffer."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k or None, top_p).softmax(-1)
    return (probs / noise).argmax(-1)


# --------------------------------------------------------------------------- the static-shape block
class FastBlock(nn.Module):
    """One decoder block over a static KV cache, sharing the original block's norms and (fused) projections."""

    def __init__(self, block: nn.Module, config, max_len: int, attention: str, splits: int):
        super().__init__()
        attn = block.attn
        self.attn_norm, self.mlp_norm = block.attn_norm, block.mlp_norm
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.n_heads, self.n_kv_heads, self.head_dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
        self.qkv = attn.qkv_proj if attn.fused else fuse_linears([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o_proj = attn.o_proj
        mlp = block.mlp
        self.gated = isinstance(mlp, GatedMLP)
        self.act = ACTIVATIONS[config.mlp]
        if self.gated:
            self.up = mlp.gate_up_proj if mlp.fused else fuse_linears([mlp.gate_proj, mlp.up_proj])
        else:
            self.up = mlp.up_proj
        self.down = mlp.down_proj
        self.attention, self.splits = attention, splits
        param = next(block.parameters())
        shape = (1, self.n_kv_heads, max_len, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=param.dtype, device=param.device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=param.dtype, device=param.device), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """mask: (g * T, L), the query rows' allowed keys: boolean for split-KV, additive (0 / -inf) for SDPA."""
        seq = x.shape[1]
        h = self.attn_norm(x)
        q, k, v = self.qkv(h).split(
            [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], dim=-1
        )
        q = q.view(1, seq, self.n_heads, self.head_dim).transpose(1, 2)  # (1, H, T, D)
        k = k.view(1, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (1, Hkv, T, D)
        v = v.view(1, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        self.k_cache[:, :, positions] = k.to(self.k_cache.dtype)
        self.v_cache[:, :, positions] = v.to(self.v_cache.dtype)
        # The g query heads of one KV head become g * T query rows against that head's keys: no repeated K/V.
        group = self.n_heads // self.n_kv_heads
        rows = q.reshape(1, self.n_kv_heads, group * seq, self.head_dim)  # (1, Hkv, g*T, D)
        scale = self.head_dim**-0.5
        if self.attention == "split_kv":
            out = split_kv_attention(rows, self.k_cache, self.v_cache, mask, scale, self.splits)
        else:
            out = F.scaled_dot_product_attention(rows, self.k_cache, self.v_cache, attn_mask=mask, scale=scale)
        out = out.reshape(1, self.n_heads, seq, self.head_dim).transpose(1, 2).reshape(1, seq, -1)
        x = x + self.o_proj(out)
        h = self.mlp_norm(x)
        if self.gated:
            gate, up = self.up(h).chunk(2, dim=-1)
            return x + self.down(self.act(gate) * up)
        return x + self.down(F.gelu(self.up(h)))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def _check_supported(model: Transformer) -> None:
    c = model.config
    if c.attention == "mla":
        raise ValueError("FastDecoder supports GQA/MHA attention; MLA models decode through generate() or LLMEngine")
    if c.position_encoding == "alibi":
        raise ValueError("FastDecoder does not support ALiBi; decode through generate() or LLMEngine")
    if c.n_experts:
        raise ValueError("FastDecoder supports dense MLPs; MoE models decode through generate() or LLMEngine")


def _allow_recompiles() -> None:
    """Every (token count, layer kind, model shape) a process decodes compiles its own block graph; the default
    limit of 8 per function would silently drop later ones to eager."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))


# --------------------------------------------------------------------------- the decoder
class FastDecoder:
    """Batch-1 decoding of one sequence at a time over a static KV cache (see the module docstring).

    compile / cuda_graph: default to True on CUDA, False on CPU. tune: compile with inductor's coordinate-descent
    tuning on CUDA, which also turns every one-row matmul into a fused, tuned Triton reduction (so an INT8 weight is
    converted inside the kernel that reads it; gpt-fast's setting). attention: "sdpa", "split_kv" or "auto"
    (split-KV once ``max_len`` >= SPLIT_KV_MIN_LEN). The model's q/k/v and gate/up weights are re-pointed into
    fused tensors (same values; the model itself keeps working and uses no extra memory for float layers).
    """

    def __init__(
        self,
        model: Transformer,
        max_len: int,
        *,
        compile: bool | None = None,
        cuda_graph: bool | None = None,
        attention: str = "auto",
        kv_splits: int = 16,
        sync_every: int = 32,
        tune: bool = True,
        prefill_chunk: int = 512,
    ) -> None:
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        on_cuda = self.device.type == "cuda"
        self.compile = on_cuda if compile is None else compile
        self.cuda_graph = on_cuda if cuda_graph is None else cuda_graph
        if self.cuda_graph and not on_cuda:
            raise ValueError("cuda_graph=True needs the model on a CUDA device")
        _check_supported(model)
        if attention not in ("auto", "sdpa", "split_kv"):
            raise ValueError(f"attention must be 'auto', 'sdpa' or 'split_kv', got {attention!r}")
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {max_len}")
        rotary = model.rotary
        if rotary is not None and rotary.cos_half.shape[0] < max_len:
            raise ValueError(
                f"max_len {max_len} is past the model's RoPE table ({rotary.cos_half.shape[0]} positions); "
                "lower max_len or raise max_seq_len"
            )
        if attention == "auto":
            attention = "split_kv" if max_len >= SPLIT_KV_MIN_LEN else "sdpa"
        # whole chunks of 16 slots (and whole split-KV chunks); the extra slots are always masked
        multiple = 16 * kv_splits if attention == "split_kv" else 16
        slots = -(-max_len // multiple) * multiple
        self.model, self.max_len, self.slots, self.sync_every = model.eval(), max_len, slots, sync_every
        self.prefill_chunk = prefill_chunk
        self.attention = attention
        c = model.config
        self.windows = [c.window_for_layer(i) for i in range(c.n_layers)]
        with torch.no_grad():
            self.blocks = nn.ModuleList(FastBlock(block, c, slots, attention, kv_splits) for block in model.layers)
        self.group = c.n_heads // c.kv_heads
        self.window_kinds = sorted(set(self.windows), key=lambda w: -1 if w is None else w)
        self.layer_mask = [self.window_kinds.index(w) for w in self.windows]
        self._eager_block_fns = [block.forward for block in self.blocks]
        self._compiled_parts = (self._prepare, self._eager_block_fns, self._head)
        self._sample_tail = self._sample_head
        if self.compile:
            _allow_recompiles()
            # one compiled graph shared by every block (same code, same shapes): compile time of one block
            options = {"coordinate_descent_tuning": True} if tune and on_cuda else None

            def compiled(fn):
                return torch.compile(fn, fullgraph=True, dynamic=False, options=options)

            block_fn = compiled(FastBlock.forward)
            self._compiled_parts = (
                compiled(self._prepare),
                [lambda *a, _b=block: block_fn(_b, *a) for block in self.blocks],
                compiled(self._head),
            )
            self._sample_tail = compiled(self._sample_head)
        self.key_positions = torch.arange(slots, device=self.device)
        self._decode_graphs: dict[tuple, torch.cuda.CUDAGraph] = {}  # per sampling settings
        self._logit_graphs: dict[int, tuple] = {}  # per token count: (graph, tokens in, start in, logits out)
        # device-resident state of the sequence being decoded
        self.tokens = torch.zeros(slots + 1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.noise = torch.ones(c.vocab_size, device=self.device)

    # -------------------------------------------------------------- one forward over static shapes
    def _prepare(self, tokens: torch.Tensor, start: torch.Tensor):
        """Embeddings, positions, RoPE and one attention mask per distinct window, shared by every block."""
        seq = tokens.shape[1]
        positions = start + torch.arange(seq, device=self.device)
        x = self.model.embed_tokens(tokens)
        rope = None
        if self.model.rotary is not None:
            table = self.model.rotary
            cos, sin = table.cos_half[positions], table.sin_half[positions]  # (T, D/2)
            rope = torch.cat((cos, cos), dim=-1).to(x.dtype), torch.cat((sin, sin), dim=-1).to(x.dtype)
        causal = self.key_positions[None, :] <= positions[:, None]  # (T, L)
        masks = []
        for window in self.window_kinds:
            allowed = causal if window is None else causal & (positions[:, None] - self.key_positions < window)
            allowed = allowed.repeat(self.group, 1)  # (g*T, L): row i * T + t is query head i of the group, token t
            if self.attention == "sdpa":
                allowed = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, -torch.inf)
            masks.append(allowed)
        return x, positions, rope, tuple(masks)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.model.norm(x))[0].float()

    def _sample_head(self, x, noise, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
        return sample_from_logits(self._head(x[:, -1:]), noise, temperature, top_k, top_p)

    def _forward(self, tokens: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Logits [T, V] (float32) of tokens [1, T] at positions start .. start + T - 1 (start: [1] on the device);
        writes their keys and values into the cache. Anything the cache holds past the last position is ignored."""
        return self._parts(False)[2](self._blocks(tokens, start))

    def _parts(self, eager: bool):
        return (self._prepare, self._eager_block_fns, self._head) if eager else self._compiled_parts

    def _blocks(self, tokens: torch.Tensor, start: torch.Tensor, eager: bool = False) -> torch.Tensor:
        """The final hidden states [1, T, dim]; eager: uncompiled (prompts: a compiled graph per length would not
        pay)."""
        prepare, block_fns, _ = self._parts(eager)
        x, positions, rope, masks = prepare(tokens, start)
        for fn, kind in zip(block_fns, self.layer_mask, strict=True):
            x = fn(x, positions, rope, masks[kind])
        return x

    def _decode_step(self, temperature: float, top_k: int | None, top_p: float | None) -> None:
        """Reads the token at ``position``, writes the next one after it and advances ``position``: all on the
        device, so a captured graph of it is the whole per-token work."""
        x = self._blocks(self.tokens[self.position].view(1, 1), self.position)
        nxt = self._sample_tail(x, self.noise[None], temperature, top_k, top_p)
        self.tokens[self.position + 1] = nxt
        self.position.add_(1)

    def _capture(self, fn) -> torch.cuda.CUDAGraph:
        """A CUDA graph of ``fn`` (which touches only static buffers), after two warm-up runs on a side stream (the
        first compiles). The warm-ups' writes land where the replays write the same values; ``position`` is
        restored so that they do not advance the sequence."""
        saved = self.position.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.position.copy_(saved)
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        self.position.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        self.position.copy_(saved)
        return graph

    # -------------------------------------------------------------- public API
    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Float32 logits [T, V] for tokens [1, T] at start_pos.. . Calls may go back (speculative decoding's
        rollback): positions past the last token are masked, so the cache never needs truncating.

        On CUDA one graph is captured per token count T; the returned tensor is that graph's output buffer, valid
        until the next call with the same T."""
        seq = tokens.shape[1]
        self._check_span(start_pos, seq)
        if not self.cuda_graph:
            return self._forward(tokens.to(self.device), torch.tensor([start_pos], device=self.device))
        if seq not in self._logit_graphs:
            # the warm-up runs write the cache: they must see this call's tokens and position, not placeholders
            inputs = tokens.to(self.device, torch.long).clone()
            start = torch.full((1,), start_pos, dtype=torch.long, device=self.device)
            out: list[torch.Tensor] = []
            graph = self._capture(lambda: out.append(self._forward(inputs, start)))
            self._logit_graphs[seq] = (graph, inputs, start, out[-1])
        graph, inputs, start, out = self._logit_graphs[seq]
        inputs.copy_(tokens, non_blocking=True)
        start.fill_(start_pos)
        graph.replay()
        return out

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """Writes the cache for tokens [1, T] at start_pos.. and returns the last token's logits [1, V]. Eager and
        without a graph (prompt lengths vary), in chunks of ``prefill_chunk`` tokens so that the position masks
        (g * chunk x max_len) stay small for long prompts."""
        seq = tokens.shape[1]
        self._check_span(start_pos, seq)
        tokens = tokens.to(self.device)
        for begin in range(0, seq, self.prefill_chunk):
            chunk = tokens[:, begin : begin + self.prefill_chunk]
            start = torch.tensor([start_pos + begin], device=self.device)
            x = self._blocks(chunk, start, eager=True)
        return self._head(x[:, -1:])

    def _check_span(self, start_pos: int, seq: int) -> None:
        if start_pos < 0 or start_pos + seq > self.max_len:
            last = start_pos + seq - 1
            raise ValueError(f"positions {start_pos}..{last} are outside the cache (0..{self.max_len - 1})")

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        seed: int = 0,
    ) -> list[int]:
        """New token ids after ``prompt_ids`` (up to ``max_new_tokens``, stopping after ``eos_id``, which is not
        returned, as in ``generate``). Greedy output equals ``generate(model, ..., temperature=0)``."""
        if not prompt_ids:
            raise ValueError("prompt_ids is empty; give at least one token")
        if len(prompt_ids) + max_new_tokens > self.max_len:
            raise ValueError(
                f"prompt ({len(prompt_ids)}) + max_new_tokens ({max_new_tokens}) exceeds max_len {self.max_len}"
            )
        if max_new_tokens <= 0:
            return []
        generator = torch.Generator(device=self.device).manual_seed(seed)
        prompt = torch.tensor([prompt_ids], device=self.device)
        last = self.prefill(prompt)
        self._fill_noise(temperature, generator)
        n = len(prompt_ids)
        self.tokens[n] = sample_from_logits(last, self.noise[None], temperature, top_k, top_p)[0]
        self.position.fill_(n)
        key = ("decode", temperature, top_k, top_p)
        produced = 1
        while produced < max_new_tokens:
            if eos_id is not None and produced % self.sync_every == 0 and self._ended(n, produced, eos_id):
                break
            self._fill_noise(temperature, generator)
            if not self.cuda_graph:
                self._decode_step(temperature, top_k, top_p)
            else:
                if key not in self._decode_graphs:
                    self._decode_graphs[key] = self._capture(lambda: self._decode_step(temperature, top_k, top_p))
                self._decode_graphs[key].replay()
            produced += 1
        new = self.tokens[n : n + produced].tolist()
        if eos_id is not None and eos_id in new:
            new = new[: new.index(eos_id)]
        return new

    def _fill_noise(self, temperature: float, generator: torch.Generator) -> None:
        if temperature != 0:
            self.noise.exponential_(1.0, generator=generator)

    def _ended(self, start: int, produced: int, eos_id: int) -> bool:
        return bool((self.tokens[start : start + produced] == eos_id).any())
