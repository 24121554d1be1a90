import pytest
import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.adamw8bit import AdamW8bit, _signed_codebook, _unsigned_codebook, dequantize, quantize
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
    codes, scales = quantize(x, signed=True)
    y = dequantize(codes, scales, _signed_codebook())[:1000]
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


def test_every_code_book_level_quantizes_to_its_own_code():
    for signed, book in ((True, _signed_codebook()[:255]), (False, _unsigned_codebook())):  # signed 255 repeats 1
        codes, scales = quantize(book, signed=signed)
        assert scales[0] == 1
        assert torch.equal(codes[: book.numel()], torch.arange(book.numel(), dtype=torch.uint8))


def test_stepping_parameters_together_equals_stepping_each_alone():
    """The flat, vectorised step keeps each parameter's blocks, scales and step count its own."""
    torch.manual_seed(0)
    shapes = [(70, 90), (4100,), (33, 200), (10,)]
    together = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    alone = [torch.nn.Parameter(p.detach().clone()) for p in together]
    opt = AdamW8bit(together, lr=1e-2, weight_decay=0.1)
    singles = [AdamW8bit([p], lr=1e-2, weight_decay=0.1) for p in alone]
    for step in range(4):
        for i, (a, b) in enumerate(zip(together, alone, strict=True)):
            grad = None if (step == 0 and i == 2) else torch.randn(a.shape) * 10.0**-i
            a.grad, b.grad = grad, None if grad is None else grad.clone()
        opt.step()
        for single in singles:
            single.step()
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert opt.state[together[2]]["step"] == 3


def test_our_8bit_adamw_is_never_a_silent_fallback(monkeypatch):
    import importlib.util
    import warnings

    from llm_platform.trainer.train import optim

    if any(importlib.util.find_spec(m.split(".")[0]) for m in optim.TORCHAO_ADAMW8BIT):
        pytest.skip("torchao is installed here, so its 8-bit AdamW is used")
    monkeypatch.setattr(optim, "_warned", set())
    with pytest.warns(UserWarning, match=r"torchao is not installed, so llm_platform's own 8-bit AdamW runs on CPU"):
        opt = build_optimizer(tiny(), TrainConfig(steps=1, optimizer="adamw8bit"))
    assert isinstance(opt, AdamW8bit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        build_optimizer(tiny(), TrainConfig(steps=1, optimizer="adamw8bit"))


def test_the_fallback_is_also_said_once_in_the_training_log(monkeypatch, caplog):
    import importlib.util

    from llm_platform.trainer.train import optim

    if any(importlib.util.find_spec(m.split(".")[0]) for m in optim.TORCHAO_ADAMW8BIT):
        pytest.skip("torchao is installed here, so its 8-bit AdamW is used")
    monkeypatch.setattr(optim, "_warned", set())
    with caplog.at_level("WARNING", logger="llmp.train"), pytest.warns(UserWarning):
        build_optimizer(tiny(), TrainConfig(steps=1, optimizer="adamw8bit"))
        build_optimizer(tiny(), TrainConfig(steps=1, optimizer="adamw8bit"))
    lines = [r.getMessage() for r in caplog.records if r.name == "llmp.train"]
    assert len(lines) == 1 and "llm_platform's own 8-bit AdamW runs on CPU" in lines[0]


def test_paged_adamw8bit_has_no_fallback_and_says_which_field_and_extra(monkeypatch):
    import sys

    from llm_platform.trainer.train.optim import OptimizerUnavailable

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # how Python marks a module as not importable
    with pytest.raises(OptimizerUnavailable, match=r"^train.optimizer: paged_adamw8bit needs the 'bitsandbytes' "
                       r"package, which is not installed; pip install 'llm-platform\[gpu\]'"):  # fmt: skip
        build_optimizer(tiny(), TrainConfig(steps=1, optimizer="paged_adamw8bit"))


def test_paged_adamw8bit_refuses_parameters_off_cuda():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed here")
    from llm_platform.trainer.train.optim import OptimizerUnavailable

    with pytest.raises(OptimizerUnavailable, match=r"^train.optimizer: paged_adamw8bit .* needs every trained "):
        build_optimizer(tiny(), TrainConfig(steps=1, optimizer="paged_adamw8bit"))


@pytest.mark.gpu
def test_paged_adamw8bit_on_cuda_is_bitsandbytes_and_follows_adamw():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    bnb = pytest.importorskip("bitsandbytes", reason="the gpu extra (bitsandbytes) is not installed")
    model = tiny().cuda()
    opt = build_optimizer(model, TrainConfig(steps=1, lr=1e-3, optimizer="paged_adamw8bit"))
    assert isinstance(opt, bnb.optim.PagedAdamW8bit)
    reference = tiny().cuda()
    ref_opt = build_optimizer(reference, TrainConfig(steps=1, lr=1e-3))
    ids = torch.randint(0, 256, (4, 32), device="cuda")
    for m, o in ((model, opt), (reference, ref_opt)):
        for _ in range(5):
            m(ids).float().logsumexp(-1).mean().backward()
            o.step()
            o.zero_grad()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0.05)
