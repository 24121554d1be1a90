"""Mixture of experts: routing, capacity, balancing loss, shared experts, the loss-free bias."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.config import capacity
from llm_platform.trainer.model.moe import MoE, balance_loss


def make_moe(**overrides) -> MoE:
    torch.manual_seed(0)
    config = get_config("mixtral-tiny", **overrides)
    moe = MoE(config)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.1)
    return moe


def test_router_picks_k_distinct_experts_with_normalised_weights():
    moe = make_moe(n_experts=8, n_experts_per_token=3)
    weights, experts, _ = moe.router(torch.randn(64, 128))
    assert experts.shape == (64, 3)
    assert all(len(set(row)) == 3 for row in experts.tolist())
    torch.testing.assert_close(weights.sum(-1), torch.ones(64))


def test_router_picks_the_highest_scores():
    moe = make_moe()
    x = torch.randn(32, 128)
    _, experts, probs = moe.router(x)
    assert torch.equal(experts.sort(-1).values, probs.topk(2, dim=-1).indices.sort(-1).values)


def test_group_limited_routing_stays_inside_the_best_groups():
    torch.manual_seed(0)
    config = get_config("deepseek-tiny")  # 8 experts in 4 groups, 2 groups kept
    moe = MoE(config)
    with torch.no_grad():
        moe.router.weight.normal_(0, 1)
    _, experts, _ = moe.router(torch.randn(256, 128))
    groups = experts // (config.n_experts // config.router_groups)
    assert all(len(set(row)) <= config.router_topk_groups for row in groups.tolist())


def test_capacity_caps_every_expert_and_drops_the_overflow():
    moe = make_moe(moe_capacity_factor=0.5)
    x = torch.randn(64, 128)
    moe(x)
    cap = capacity(moe.config, 64)
    assert cap == 16  # 0.5 x 64 tokens x 2 choices / 4 experts
    assert int(moe.last_load.max()) <= cap
    assert int(moe.last_load.sum()) < 64 * 2  # something was dropped


def test_ample_capacity_equals_dropless_routing():
    dropless = make_moe()
    with_capacity = make_moe(moe_capacity_factor=4.0)  # 4 x the even share = every token fits
    x = torch.randn(2, 32, 128)
    torch.testing.assert_close(with_capacity(x), dropless(x))
    assert torch.equal(with_capacity.last_load, dropless.last_load)


def test_dropped_tokens_get_no_routed_output():
    moe = make_moe(moe_capacity_factor=0.01)  # capacity 1: only the first token per expert is served
    x = torch.randn(40, 128)
    out = moe(x)
    served = int(moe.last_load.sum())
    assert served <= moe.n_experts
    assert (out.abs().sum(-1) > 0).sum() <= served


def test_balance_loss_is_one_for_uniform_routing_and_larger_when_skewed():
    n_experts, tokens = 4, 64
    uniform_probs = torch.full((tokens, n_experts), 1 / n_experts)
    uniform_choice = torch.arange(tokens * 2).view(tokens, 2) % n_experts
    assert balance_loss(uniform_probs, uniform_choice, n_experts).item() == pytest.approx(1.0)
    skewed_probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).expand(tokens, -1)
    skewed_choice = torch.tensor([[0, 1]]).expand(tokens, -1)
    assert balance_loss(skewed_probs, skewed_choice, n_experts).item() > 1.5


def test_balance_loss_is_mixtral_loss_divided_by_top_k():
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    logits = torch.randn(50, 4)
    experts = logits.softmax(-1).topk(2, dim=-1).indices
    reference = mixtral.load_balancing_loss_func((logits,), num_experts=4, top_k=2)
    assert balance_loss(logits.softmax(-1), experts, 4).item() == pytest.approx(reference.item() / 2, rel=1e-5)


def test_shared_experts_run_for_every_token():
    torch.manual_seed(0)
    moe = MoE(get_config("deepseek-tiny", moe_capacity_factor=0.25))  # routed experts drop most tokens
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.1)
    x = torch.randn(64, 128)
    with_shared = moe(x)
    shared = moe.shared_experts
    moe.shared_experts = None
    routed_only = moe(x)
    torch.testing.assert_close(with_shared - routed_only, shared(x))
    assert (shared(x).abs().sum(-1) > 0).all()
    assert (routed_only.abs().sum(-1) == 0).any()  # some tokens got nothing from the routed experts...
    assert (with_shared.abs().sum(-1) > 0).all()  # ...but every token still got the shared experts


def test_loss_free_bias_moves_toward_balance():
    moe = make_moe()
    moe.router.update_bias(torch.tensor([10.0, 0.0, 5.0, 5.0]), rate=0.01)
    assert moe.router.bias.tolist() == pytest.approx([-0.01, 0.01, 0.0, 0.0])


def test_loss_free_bias_changes_choices_not_weights():
    moe = make_moe()
    x = torch.randn(16, 128)
    weights_before, experts_before, _ = moe.router(x)
    moe.router.bias.copy_(torch.tensor([100.0, 100.0, 0.0, 0.0]))  # forces experts 0 and 1
    weights, experts, _ = moe.router(x)
    assert (experts.sort(-1).values == torch.tensor([0, 1])).all()
    assert (weights <= 1).all()  # weights still come from the unbiased scores


def test_model_exposes_aux_loss_load_and_bias_update():
    config = get_config("deepseek-tiny", n_layers=3)
    model = Transformer(config)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    logits = model(ids)
    loads = model.expert_load()
    assert sorted(loads) == [1, 2]  # layer 0 is dense
    assert all(int(load.sum()) == 2 * 16 * config.n_experts_per_token for load in loads.values())
    aux = model.aux_loss()
    assert aux.requires_grad and aux.item() > 0
    (logits.mean() + aux).backward()
    assert model.layers[1].mlp.router.weight.grad is not None
    model.update_router_biases()
    assert model.layers[1].mlp.router.bias.abs().sum() > 0


def test_dense_model_aux_loss_is_zero():
    model = Transformer(get_config("llama-tiny"))
    model(torch.randint(0, 512, (1, 8)))
    assert model.aux_loss().item() == 0.0 and model.expert_load() == {}


def test_dense_and_moe_layers_mix_by_interval():
    config = get_config("mixtral-tiny", n_layers=5, first_dense_layers=1, moe_layer_interval=2)
    assert [config.is_moe_layer(i) for i in range(5)] == [False, True, False, True, False]
