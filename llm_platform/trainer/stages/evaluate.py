"""The `eval` stage: perplexity on the held-out split, and sample generations, written to a JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from llm_platform.trainer.data.pack import open_split
from llm_platform.trainer.eval.perplexity import perplexity
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer

from .context import StageContext


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.eval
    model_dir = ctx.input("model")
    model = load_pretrained(model_dir)
    report: dict = {"model": str(model_dir)}
    metrics: dict = {}
    if "perplexity" in spec.metrics:
        seq_len = spec.seq_len or model.config.max_seq_len
        result = perplexity(model, open_split(ctx.input("tokens"), "val"), seq_len, spec.batch_size, spec.limit)
        report["perplexity"] = result
        metrics |= {"val_loss": round(result["loss"], 4), "perplexity": round(result["perplexity"], 3)}
        ctx.console.print(
            f"[bold]eval[/]: validation loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f} "
            f"over {result['tokens']:,} tokens"
        )
    if spec.generate:
        tokenizer = Tokenizer.load(model_dir)
        g = spec.generate
        samples = []
        for prompt in g.prompts:
            ids = generate(
                model,
                tokenizer.encode(prompt),
                g.max_new_tokens,
                g.temperature,
                g.top_k,
                g.top_p,
                tokenizer.eos_id,
                g.seed,
            )
            samples.append({"prompt": prompt, "completion": tokenizer.decode(ids)})
            ctx.console.print(f"[bold]sample[/]: [cyan]{prompt}[/]{tokenizer.decode(ids)}")
        report["samples"] = samples
    (out / "report").mkdir()
    (out / "report" / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return metrics
