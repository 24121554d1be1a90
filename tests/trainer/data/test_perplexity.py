import math
import random
import string

import numpy as np
import pytest

from llm_platform.trainer.data.document import Document, Drop
from llm_platform.trainer.data.perplexity import PerplexityConfig, PerplexityScorer, PerplexityStep

from .conftest import flores_lines, wikitext_articles


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory):
    """A small model of ours, pretrained for a few dozen steps on WikiText, saved as the platform saves models."""
    torch = pytest.importorskip("torch")
    from llm_platform.trainer.model import Transformer, get_config
    from llm_platform.trainer.model.hf import save_pretrained
    from llm_platform.trainer.tokenizer import train_bpe

    lines = [line for a in wikitext_articles() for line in a.splitlines() if len(line) > 100]
    tokenizer = train_bpe(lines[:1500], 512)
    ids = np.concatenate([np.asarray([*tokenizer.encode(line), tokenizer.eos_id]) for line in lines])
    torch.manual_seed(0)
    config = get_config("llama-tiny", vocab_size=tokenizer.vocab_size, dim=64, n_layers=1, n_heads=2, num_kv_heads=1)
    model = Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        starts = rng.integers(0, len(ids) - 65, 16)
        batch = torch.from_numpy(np.stack([ids[s : s + 65] for s in starts]).astype(np.int64))
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("reference-model")
    save_pretrained(model, folder)
    tokenizer.save(folder)
    return folder


def _garble(text: str, rng: random.Random) -> str:
    """Real text with 30% of its letters replaced at random: what OCR noise or broken encodings look like."""
    return "".join(rng.choice(string.ascii_letters) if c.isalpha() and rng.random() < 0.3 else c for c in text)


@pytest.mark.slow
def test_garbled_text_has_higher_perplexity_and_is_filtered(reference_model):
    rng = random.Random(0)
    english = flores_lines("eng_Latn")[:24]
    garbled = [_garble(line, rng) for line in english]
    scorer = PerplexityScorer(reference_model)
    clean_ppl, noisy_ppl = scorer.perplexities(english), scorer.perplexities(garbled)
    assert sum(n > c for c, n in zip(clean_ppl, noisy_ppl, strict=True)) >= 23
    threshold = math.sqrt(float(np.median(clean_ppl)) * float(np.median(noisy_ppl)))
    step = PerplexityStep(PerplexityConfig(model=str(reference_model), max_perplexity=threshold, batch_size=8))
    results = step.process_batch([Document(str(i), t, "flores") for i, t in enumerate(english + garbled)])
    assert sum(isinstance(r, Document) for r in results[:24]) >= 18
    assert sum(r == Drop("perplexity_high") for r in results[24:]) >= 18
    assert all(r.meta["perplexity"] <= threshold for r in results if isinstance(r, Document))
