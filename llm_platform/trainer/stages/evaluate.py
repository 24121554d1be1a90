"""The `eval` stage: perplexity on the held-out split, held-out standard-library functions (`function_choice`), lm-eval
benchmarks, and sample generations.

Writes `report/eval.json` (everything measured; `scores` holds the headline numbers, `baselines` the spec's reference
numbers), `report/eval.md` with `report/scores.png` (tables, per-task bars, pass@k curves) and, for benchmarks,
`report/samples/<task>.jsonl` (each example's prompt, the model's scores and whether it was right); headline numbers
(`perplexity`, `mmlu_acc`, `hellaswag_acc_norm`, ...) become the stage's metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llm_platform.api.evaluate import EvalSpec
from llm_platform.trainer.data.pack import open_split
from llm_platform.trainer.eval.function_choice import NAME as FUNCTION_CHOICE
from llm_platform.trainer.eval.function_choice import function_choice
from llm_platform.trainer.eval.generation import Decoding, generate_batch
from llm_platform.trainer.eval.perplexity import perplexity
from llm_platform.trainer.eval.report import write_report
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.bos import encode_text

from .context import StageContext


def _validation_split(ctx: StageContext):
    """The held-out tokens perplexity is measured on; an empty split is refused in one line naming the fix."""
    try:
        return open_split(ctx.input("tokens"), "val")
    except FileNotFoundError:
        source = ctx.sources.get("tokens", "tokens")
        raise ValueError(
            f"eval.metrics: perplexity needs held-out tokens, and the validation split of stage '{source}' is empty; "
            "raise data.val_fraction (or add documents) and run again from the data stage (llmp run JOB --from "
            "DATA_STAGE), or drop perplexity from eval.metrics"
        ) from None


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.eval
    tokens = _validation_split(ctx) if "perplexity" in spec.metrics else None  # before the model: fail in a second
    model_dir = ctx.input("model")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_pretrained(model_dir, device=device, overrides=ctx.model_overrides())
    report: dict = {"model": str(model_dir)}
    metrics: dict = {}
    (out / "report").mkdir()
    if tokens is not None:
        seq_len = spec.seq_len or model.config.max_seq_len
        result = perplexity(model, tokens, seq_len, spec.batch_size, spec.limit, device)
        report["perplexity"] = result
        metrics |= {"val_loss": round(result["loss"], 4), "perplexity": round(result["perplexity"], 3)}
        ctx.console.print(
            f"[bold]eval[/]: validation loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}, "
            f"token accuracy {result['token_accuracy']:.4f} over {result['tokens']:,} tokens "
            f"({seq_len}-token context)"
        )
    if FUNCTION_CHOICE in spec.metrics:
        tokenizer = Tokenizer.load(model_dir)
        choice = function_choice(model, tokenizer, ctx.scratch, max_len=model.config.max_seq_len,
                                 batch_size=spec.batch_size, limit=spec.limit)  # fmt: skip
        report[FUNCTION_CHOICE] = choice
        metrics |= {
            f"{FUNCTION_CHOICE}_acc": round(choice["acc"], 4),
            f"{FUNCTION_CHOICE}_acc_norm": round(choice["acc_norm"], 4),
        }
        ctx.console.print(
            f"[bold]eval[/]: {FUNCTION_CHOICE}: the real function preferred in {choice['acc']:.1%} of "
            f"{choice['pairs']} held-out pairs ({choice['acc_norm']:.1%} per token; chance 50%)"
        )
    samples: dict = {}
    if spec.tasks:
        report["benchmarks"], headline, samples = benchmarks(model, model_dir, spec, out / "report" / "samples")
        metrics |= headline
        if any(task.startswith("humaneval") for task in spec.tasks):
            from llm_platform.trainer.eval.sandbox import isolation

            report["sandbox"] = isolation()  # how the generated code was contained
        ctx.console.print(f"[bold]eval[/]: {', '.join(f'{k} {v:.4f}' for k, v in headline.items())}")
    if spec.generate:
        tokenizer = Tokenizer.load(model_dir)
        g = spec.generate
        decoding = Decoding(
            max_new_tokens=g.max_new_tokens,
            do_sample=g.temperature > 0,
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            seed=g.seed,
        )
        prompts = [encode_text(tokenizer, prompt) or [0] for prompt in g.prompts]  # BOS first: tokenizer/bos.py
        completions = generate_batch(model, tokenizer, prompts, [decoding] * len(prompts))
        generated = []
        for prompt, completion in zip(g.prompts, completions, strict=True):
            generated.append({"prompt": prompt, "completion": completion})
            ctx.console.print(f"[bold]sample[/]: [cyan]{prompt}[/]{completion}")
        report["samples"] = generated
    if spec.refusals:
        metrics |= refusal_metrics(model, model_dir, spec, report, ctx)
    report["scores"] = metrics
    if spec.baselines:
        report["baselines"] = spec.baselines
    (out / "report" / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    markdown = write_report(out / "report", report, samples)
    ctx.console.print(f"[bold]eval[/]: wrote {markdown.relative_to(out)} with the scores and plots")
    return metrics


def refusal_metrics(model, model_dir: Path, spec: EvalSpec, report: dict, ctx: StageContext) -> dict:
    """`refusal_rate_harmful` and `refusal_rate_benign` of the model's greedy answers, through the inference engine;
    every answer goes into the report."""
    from llm_platform.trainer.data.builtin import refusal_requests
    from llm_platform.trainer.data.safety import refusal_rates
    from llm_platform.trainer.inference import LLMEngine
    from llm_platform.trainer.inference.engine import checkpoint_eos_ids

    harmful, benign = refusal_requests(spec.refusals.requests)
    engine = LLMEngine(model, Tokenizer.load(model_dir), eos_token_ids=checkpoint_eos_ids(model_dir))
    rates = refusal_rates(engine, harmful, benign, spec.refusals.max_tokens)
    report["refusals"] = rates
    ctx.console.print(
        f"[bold]eval[/]: refuses {rates['refusal_rate_harmful']:.0%} of {len(harmful)} harmful requests and "
        f"{rates['refusal_rate_benign']:.0%} of {len(benign)} benign look-alikes"
    )
    return {k: round(rates[k], 4) for k in ("refusal_rate_harmful", "refusal_rate_benign")}


def benchmarks(
    model: torch.nn.Module, model_dir: Path, spec: EvalSpec, samples_dir: Path
) -> tuple[dict, dict[str, float], dict[str, list[dict]]]:
    """`spec.tasks` through lm-eval: (the report's part, headline metrics, per-example records); each example's
    record also goes to `samples_dir/<task>.jsonl`."""
    from llm_platform.trainer.eval.benchmarks import headline_metrics, report, run_tasks
    from llm_platform.trainer.eval.data_dir import local_data_dir
    from llm_platform.trainer.eval.lm_eval_model import PlatformLM, hf_adds_bos

    tokenizer = Tokenizer.load(model_dir)
    lm = PlatformLM(
        model,
        tokenizer,
        batch_size=spec.batch_size,
        add_bos=hf_adds_bos(model_dir, tokenizer),
        gen_toks_limit=spec.max_gen_toks,
    )
    results = run_tasks(
        lm,
        spec.tasks,
        data_dir=local_data_dir(spec.data_dir),
        limit=spec.limit,
        num_fewshot=spec.num_fewshot,
        log_samples=True,
        apply_chat_template=spec.apply_chat_template,
        fewshot_as_multiturn=spec.fewshot_as_multiturn,
    )
    samples_dir.mkdir()
    for task, records in results["samples"].items():
        lines = (json.dumps(record, ensure_ascii=False, default=str) for record in records)
        (samples_dir / f"{task}.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return report(results, spec.tasks, spec.limit), headline_metrics(results, spec.tasks), results["samples"]
