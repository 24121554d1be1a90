"""`llmp eval compare RUN_OR_DIR ...`: evaluated runs side by side, with bootstrap confidence intervals and each run's
difference from the first."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from llm_platform.observability.console import make_console

app = typer.Typer(no_args_is_help=True, help="Evaluation reports: compare runs.")
err = make_console(stderr=True)


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return ""
    form = "{:+.4f}" if signed else "{:.4f}"
    return escape(f" [{form.format(low)}, {form.format(high)}]")


@app.command("compare")
def compare_runs(
    runs: Annotated[list[str], typer.Argument(help="Eval report folders, eval.json files, or run folders.")],
    level: Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals.")] = 0.95,
    iterations: Annotated[int, typer.Option(min=100, max=100_000, help="Bootstrap resamples.")] = 1000,
    baselines: Annotated[bool, typer.Option(help="Show the reference numbers the runs' specs name.")] = True,
) -> None:
    """Print the runs' scores side by side: each with its bootstrap interval, later runs with their difference from
    the first (paired over the same examples) and its interval."""
    from rich.table import Table

    from llm_platform.trainer.eval.compare import Run, compare, load_runs

    try:
        loaded = [run for path in runs for run in load_runs(path)]
    except (ValueError, OSError) as error:
        err.print(str(error), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if baselines:
        named = {name: numbers for run in loaded for name, numbers in run.baselines.items()}
        loaded += [Run(f"baseline {name}", dict(numbers)) for name, numbers in named.items()]
    rows = compare(loaded, iterations, level)
    table = Table(title=f"{len(loaded)} runs; intervals: {level:.0%} bootstrap, {iterations} resamples")
    table.add_column("metric")
    for i, run in enumerate(loaded):
        title = run.name if i == 0 else f"{run.name} (Δ vs {loaded[0].name})"
        table.add_column(escape(title), justify="right")
    for row in rows:
        cells = []
        for cell in row.cells:
            if cell.value is None:
                cells.append("–")
                continue
            text = f"{cell.value:.4f}{_interval(cell.low, cell.high)}"
            if cell.delta is not None:
                color = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "white"
                text += f"\n[{color}]{cell.delta:+.4f}[/]{_interval(cell.delta_low, cell.delta_high, signed=True)}"
            cells.append(text)
        table.add_row(escape(row.metric), *cells)
    make_console().print(table)


@app.command("best-of-n")
def best_of_n_command(
    model: Annotated[str, typer.Argument(help="The policy: a Hugging Face format folder with tokenizer files.")],
    reward: Annotated[
        str, typer.Argument(help="The reward model: the model/ folder of an align stage (method: reward).")
    ],
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="A request (repeat for several).")],
    n: Annotated[int, typer.Option(min=2, max=128, help="Completions sampled per prompt.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, max=32768)] = 64,
    temperature: Annotated[float, typer.Option(min=0.01, max=10.0)] = 0.8,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
) -> None:
    """Sample n completions per prompt with the inference engine, score them with the reward model, and print one
    JSON line per prompt: the best completion, its reward, and every completion's reward."""
    import json

    from llm_platform.trainer.data.safety.refusals import chat_prompt_ids
    from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
    from llm_platform.trainer.inference.best_of_n import best_of_n
    from llm_platform.trainer.train.reward import load_reward_model

    # a missing file or a refused request (OSError, ValueError, InvalidRequest) is the group's one-line report
    engine = LLMEngine.from_pretrained(model, config=EngineConfig(seed=seed))
    scorer = load_reward_model(reward)
    if engine.tokenizer is None:
        raise FileNotFoundError(f"{model}: no tokenizer files; the prompts are text")
    ids = [chat_prompt_ids(engine.tokenizer, p, max(1, engine.max_model_len - max_tokens)) for p in prompt]
    params = SamplingParams(n=n, max_tokens=max_tokens, temperature=temperature, seed=seed)
    results = best_of_n(engine, scorer.to(next(engine.model.parameters()).device), ids, params)
    for text, result in zip(prompt, results, strict=True):
        line = {"prompt": text, "best": result.best.text, "reward": round(result.best_reward, 6),
                "rewards": [round(r, 6) for r in result.rewards]}  # fmt: skip
        typer.echo(json.dumps(line, ensure_ascii=False))
