import pytest
import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.adamw8bit import AdamW8bit, _signed_codebook, dequantize, quantize
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.optim import build_optimizer, param_groups


def tiny():
    torch.manual_seed(0)
    return Transformer(get_config("llama-tiny", dim=64, n_layers=2, n_heads=4, ffn_dim=128, vocab_size=256))


def test_weight_decay_applies_to_matrices_only_and_tied_weights_once():
    model = tiny()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert sum(p is model.embed_tokens.weight for p in decay["params"]) == 1


def test_build_optimizer_uses_the_configured_betas_and_decay():
    opt = build_optimizer(tiny(), TrainConfig(steps=1, lr=1e-3, betas=(0.9, 0.95)))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_blockwise_quantization_keeps_small_values_within_a_few_percent():
    x = torch.randn(1000) * torch.logspace(-3, 0, 1000)
    codes, scales = quantize(x, _signed_codebook())
    y = dequantize(codes, scales, _signed_codebook(), x)
    assert codes.dtype == torch.uint8
    rel = ((y - x).abs() / x.abs())[x.abs() > 1e-3 * scales.repeat_interleave(256)[:1000]]
    assert rel.max() < 0.05


def _fit(optimizer_cls, steps=60):
    torch.manual_seed(0)
    layer = torch.nn.Linear(128, 64)
    x, y = torch.randn(256, 128), torch.randn(256, 64)
    opt = optimizer_cls(layer.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for _ in range(steps):
        loss = (layer(x) - y).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss.item(), layer.weight.detach(), opt


def test_8bit_adamw_follows_fp32_adamw_with_a_quarter_of_the_state():
    loss32, w32, _ = _fit(torch.optim.AdamW)
    loss8, w8, opt8 = _fit(AdamW8bit)
    assert loss8 == pytest.approx(loss32, rel=1e-3)
    assert (w8 - w32).abs().max() < 0.05 * w32.abs().max()
    weight_state = opt8.state[opt8.param_groups[0]["params"][0]]
    assert weight_state["exp_avg_codes"].dtype == torch.uint8
    assert opt8.state_bytes() < 0.3 * 8 * sum(p.numel() for p in opt8.param_groups[0]["params"])


def test_8bit_adamw_state_round_trips_through_state_dict():
    _, _, opt = _fit(AdamW8bit, steps=3)
    params = opt.param_groups[0]["params"]
    clone = AdamW8bit(params, lr=1e-2)
    clone.load_state_dict(opt.state_dict())
    for p in params:
        for key, value in opt.state[p].items():
            torch.testing.assert_close(clone.state[p][key], value)
