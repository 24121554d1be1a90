"""Packed batches with document masks: fine-tuning rows and EOS-separated pretraining windows give the loss of their
documents run one by one, and a model trains on them."""

import numpy as np
import torch

from llm_platform.trainer.data.batching import Example, FinetuneLoader
from llm_platform.trainer.data.sft import shifted
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.loss import IGNORE_INDEX
from llm_platform.trainer.train.objective import NextTokenLoss

EOS = 1


def _examples(count: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(4, 12))
        start = int(rng.integers(2, 400))
        ids = [(start + 3 * i) % 500 + 2 for i in range(n)]  # a learnable arithmetic sequence
        out.append(Example(ids, [i >= 2 for i in range(n)]))  # the first two tokens are a "prompt"
    return out


def _separate_loss(model: Transformer, examples: list[Example]) -> torch.Tensor:
    total, count = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.input_ids])
        labels = torch.tensor([[t if m else IGNORE_INDEX for t, m in zip(e.input_ids, e.loss_mask, strict=True)]])
        logits = model(ids[:, :-1])
        losses = torch.nn.functional.cross_entropy(logits[0], labels[0, 1:], reduction="none")
        keep = labels[0, 1:] != IGNORE_INDEX
        total, count = total + losses[keep].sum(), count + int(keep.sum())
    return total / count


def test_packed_finetune_row_loss_equals_examples_run_separately():
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny")).eval()
    examples = _examples(5)
    loader = FinetuneLoader(examples, mode="pack", seq_len=64, batch_size=4, prefetch=0)
    (batch,) = list(loader)
    rows = shifted(batch, torch.device("cpu"))
    assert rows["document_ids"].shape == rows["input_ids"].shape
    with torch.no_grad():
        packed = NextTokenLoss(model, reset_positions=True).eval()(rows)
        alone = _separate_loss(model, examples)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)


def test_pretraining_window_masked_at_eos_equals_documents_run_separately():
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny")).eval()
    docs = [torch.randint(2, 500, (n,)).tolist() + [EOS] for n in (6, 9, 4)]
    window = torch.tensor([sum(docs, [])])
    with torch.no_grad():
        packed = NextTokenLoss(model, eos_id=EOS, reset_positions=True).eval()(window)
        # every target of the window is scored; the EOS of a document predicts the next document's first token
        # from its own document only, which is what a run of the document followed by that token gives
        total = 0.0
        starts = np.cumsum([0] + [len(d) for d in docs])
        flat = window[0]
        for i, d in enumerate(docs):
            end = min(starts[i] + len(d) + 1, len(flat))
            part = flat[starts[i] : end][None]
            logits = model(part[:, : len(d)])[:, : part.shape[1] - 1]
            total = total + torch.nn.functional.cross_entropy(logits[0], part[0, 1:], reduction="sum")
    torch.testing.assert_close(packed, total / (window.shape[1] - 1), atol=1e-5, rtol=1e-5)


def test_a_model_trains_on_packed_masked_batches():
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny"))
    objective = NextTokenLoss(model, reset_positions=True)
    loader = FinetuneLoader(_examples(64), mode="pack", seq_len=48, batch_size=4, epochs=None, prefetch=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _, batch in zip(range(30), loader, strict=False):
        loss = objective(shifted(batch, torch.device("cpu")))
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_offloading_activations_leaves_loss_and_gradients_unchanged():
    batch = torch.randint(2, 500, (2, 65), generator=torch.Generator().manual_seed(0))
    batch[:, [20, 40]] = EOS
    results = []
    for offload in (False, True):
        torch.manual_seed(0)
        model = Transformer(get_config("llama-tiny"))
        loss = NextTokenLoss(model, eos_id=EOS, reset_positions=True, offload_activations=offload)(batch)
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
