"""Mixture of experts: a top-k router, routed experts, optional shared experts (DeepSeek), and two ways to balance load.

Balancing
  * auxiliary loss (Switch Transformer): ``n_experts * sum_e f_e * P_e`` where f_e is the fraction of routed slots that
    went to expert e and P_e the mean router probability of e. It is 1.0 for perfectly uniform routing and grows with
    imbalance. ``Transformer.aux_loss()`` returns the coefficient-weighted sum over MoE layers.
  * auxiliary-loss-free bias (DeepSeek-V3): a per-expert bias added to the scores only for choosing experts; after each
    optimizer step ``update_bias`` nudges it up for under-loaded and down for over-loaded experts.

Dispatch
  * dropless (``moe_capacity_factor=None``): tokens are sorted by expert and each expert runs on its own slice.
  * capacity (``moe_capacity_factor=f``): each expert takes at most C = ceil(f * tokens * k / E) tokens; first choices
    are served before second choices, earlier tokens before later ones, and overflow is dropped (the residual carries
    the token). Shapes are static, so this path compiles without graph breaks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig, capacity
from .init import WeightInit, init_children
from .mlp import ACTIVATIONS, GatedMLP


class Router(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.n_experts, self.top_k = c.n_experts, c.n_experts_per_token
        self.score, self.norm_topk, self.scale = c.router_score, c.router_norm_topk, c.router_scale
        self.groups, self.topk_groups = c.router_groups, c.router_topk_groups
        self.weight = nn.Parameter(torch.empty(c.n_experts, c.dim))
        self.register_buffer("bias", torch.zeros(c.n_experts), persistent=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Routes [N, dim] tokens: (weights [N, k], expert ids [N, k], probabilities [N, E] for the aux loss)."""
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.softmax(-1) if self.score == "softmax" else logits.sigmoid()
        choice = scores + self.bias.float()
        if self.groups > 1:
            choice = self._keep_best_groups(choice)
        experts = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, experts)
        if self.norm_topk:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        probs = scores if self.score == "softmax" else scores / scores.sum(-1, keepdim=True)
        return weights * self.scale, experts, probs

    def _keep_best_groups(self, choice: torch.Tensor) -> torch.Tensor:
        """Group-limited routing: rank groups by the sum of their two best scores and mask all but the best ones."""
        grouped = choice.view(choice.shape[0], self.groups, -1)
        group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
        best = group_score.topk(self.topk_groups, dim=-1).indices
        keep = torch.zeros_like(group_score, dtype=torch.bool).scatter(1, best, True)
        return grouped.masked_fill(~keep.unsqueeze(-1), float("-inf")).view_as(choice)

    def init_weights(self, init: WeightInit) -> None:
        """Router weights Normal(0, std); the balancing bias starts at zero."""
        init.normal_(self.weight)
        self.bias.zero_()

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor, rate: float) -> None:
        """Auxiliary-loss-free balancing step: bias += rate * sign(mean load - load of the expert)."""
        load = load.float()
        self.bias += rate * torch.sign(load.mean() - load)


def balance_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch-Transformer load-balancing loss: n_experts * sum_e (routed fraction_e x mean probability_e)."""
    fraction = torch.bincount(experts.flatten(), minlength=n_experts).float() / experts.numel()
    return n_experts * (fraction * probs.mean(0)).sum()


class Experts(nn.Module):
    """E gated MLPs stored as stacked [E, out, in] weights, in Hugging Face's per-expert layout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        e, d, f = config.n_experts, config.dim, config.expert_ffn_dim
        self.act = ACTIVATIONS[config.mlp]
        self.gate_proj = nn.Parameter(torch.empty(e, f, d))
        self.up_proj = nn.Parameter(torch.empty(e, f, d))
        self.down_proj = nn.Parameter(torch.empty(e, d, f))

    def init_weights(self, init: WeightInit) -> None:
        """As a dense gated MLP's: gate and up Normal(0, std), down (into the residual stream) the residual std."""
        init.normal_(self.gate_proj)
        init.normal_(self.up_proj)
        init.normal_(self.down_proj, residual=True)

    def one(self, e: int, x: torch.Tensor) -> torch.Tensor:
        h = self.act(F.linear(x, self.gate_proj[e])) * F.linear(x, self.up_proj[e])
        return F.linear(h, self.down_proj[e])

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        """All experts at once on [E, C, dim] slots."""
        h = self.act(torch.bmm(x, self.gate_proj.transpose(1, 2))) * torch.bmm(x, self.up_proj.transpose(1, 2))
        return torch.bmm(h, self.down_proj.transpose(1, 2))


class MoE(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_experts, self.top_k = config.n_experts, config.n_experts_per_token
        self.config = config
        self.router = Router(config)
        self.experts = Experts(config)
        shared = config.expert_ffn_dim * config.n_shared_experts
        self.shared_experts = GatedMLP(config, shared) if config.n_shared_experts else None
        # Statistics of the latest forward, read by Transformer.aux_loss()/expert_load(). Plain attributes rather than
        # buffers: a recomputation under activation checkpointing overwrites them with the same values.
        self.last_balance_loss: torch.Tensor | None = None
        self.last_load: torch.Tensor | None = None

    def init_weights(self, init: WeightInit) -> None:
        """The router, the routed experts, then the shared experts."""
        init_children(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        weights, experts, probs = self.router(tokens)
        self.last_balance_loss = balance_loss(probs, experts, self.n_experts)
        if self.config.moe_capacity_factor is None:
            routed, load = self._dropless(tokens, weights, experts)
        else:
            routed, load = self._with_capacity(tokens, weights, experts)
        self.last_load = load.detach()
        if self.shared_experts is not None:
            routed = routed + self.shared_experts(tokens)
        return routed.view(shape)

    def _dropless(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor):
        flat = experts.flatten()
        order = flat.argsort(stable=True)
        token_of = order // self.top_k
        load = torch.bincount(flat, minlength=self.n_experts)
        outputs = []
        for e, rows in enumerate(x[token_of].split(load.tolist())):
            if rows.shape[0]:
                outputs.append(self.experts.one(e, rows))
        y = torch.cat(outputs) * weights.flatten()[order, None].to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token_of, y), load

    def _with_capacity(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor):
        n_tokens, k = experts.shape
        cap = capacity(self.config, n_tokens)
        choice_major = experts.t().reshape(-1)  # all first choices, then all second choices, ...
        token_of = torch.arange(n_tokens, device=x.device).repeat(k)
        one_hot = F.one_hot(choice_major, self.n_experts)
        position = ((one_hot.cumsum(0) - 1) * one_hot).sum(-1)
        kept = position < cap
        slot = torch.where(kept, choice_major * cap + position, self.n_experts * cap)  # overflow -> a spare slot
        slots = x.new_zeros(self.n_experts * cap + 1, x.shape[-1]).index_copy(0, slot, x[token_of])
        out = self.experts.batched(slots[:-1].view(self.n_experts, cap, -1)).reshape(-1, x.shape[-1])
        out = torch.cat((out, out.new_zeros(1, x.shape[-1])))
        gate = (weights.t().reshape(-1) * kept).to(x.dtype)
        routed = torch.zeros_like(x).index_add_(0, token_of, out[slot] * gate[:, None])
        load = (one_hot * kept[:, None]).sum(0)
        return routed, load
