import torch
import torch.nn.functional as F

from llm_platform.trainer.train.loss import IGNORE_INDEX, linear_cross_entropy, lm_loss


def test_lm_loss_is_cross_entropy_over_the_scored_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    targets[0, :2] = IGNORE_INDEX
    keep = targets != IGNORE_INDEX
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(lm_loss(logits, targets), expected)


def test_z_loss_adds_the_mean_squared_log_normaliser_of_scored_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7) * 3
    targets = torch.randint(0, 7, (3, 4))
    targets[1, 1] = IGNORE_INDEX
    keep = targets != IGNORE_INDEX
    z = torch.logsumexp(logits[keep], -1).square().mean()
    torch.testing.assert_close(lm_loss(logits, targets, z_loss=1e-2), lm_loss(logits, targets) + 1e-2 * z)


def test_fused_linear_loss_matches_the_full_loss_in_value_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (2, 9))
    targets[1, -3:] = IGNORE_INDEX
    full = lm_loss(hidden @ weight.t(), targets, z_loss=1e-3)
    full_grads = torch.autograd.grad(full, (hidden, weight))
    chunked = linear_cross_entropy(hidden, weight, targets, z_loss=1e-3, chunk_tokens=4)
    chunked_grads = torch.autograd.grad(chunked, (hidden, weight))
    torch.testing.assert_close(chunked, full)
    for a, b in zip(chunked_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_fused_linear_loss_under_bf16_autocast_runs_the_matmuls_in_bf16():
    torch.manual_seed(0)
    hidden = torch.randn(4, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 40, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(hidden, weight, targets, chunk_tokens=3)
        reference = lm_loss(hidden @ weight.t(), targets)
    fused.backward()
    assert weight.grad.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    torch.testing.assert_close(fused, reference, atol=2e-2, rtol=1e-2)
