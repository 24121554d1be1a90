"""What `llmp run` prints when the job ends: one row per stage with what it achieved (the loss falling from its first
to its last step, the held-out loss, DPO's reward accuracy and margin, eval scores, the chat answer), then where
every artifact is (model folders, adapters, reports, pictures), as paths to copy whole.

The rows and the artifact list are pure functions of the stages' outcomes and manifests; only `print_summary` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llm_platform.api.status import DONE, StagePhase
from llm_platform.trainer.stages.progress import location

if TYPE_CHECKING:
    from llm_platform.executor import StageOutcome
    from llm_platform.storage import ArtifactStore, Manifest

HEADLINE_METRICS = (
    "train_docs",
    "vocab_size",
    "train_tokens",
    "train_examples",
    "train_pairs",
    "tokens_per_s",
    "val_loss",
    "perplexity",
    "reward_accuracy",
    "reward_margin",
    "val_reward_accuracy",
    "val_reward_margin",
    "answer",
)
BENCHMARK_SUFFIXES = ("_acc", "_acc_norm", "_exact_match", "_strict_match")
COLORS: dict[StagePhase, str] = {
    "Succeeded": "green",
    "UpToDate": "dim",
    "Running": "cyan",
    "Failed": "red",
    "Skipped": "yellow",
}
"""A stage phase's color here and in `llmp status`."""
VAL_LOSS_NOTE = (
    "val_loss: a training stage's is measured on its own held-out split (pretrain: windows of train.seq_len tokens, "
    "train.eval_batches of them; sft/dpo: held-out records, DPO's is its pair loss); eval's on the data's "
    "validation split at the eval context length over eval.limit batches, so the numbers differ."
)


def headline_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """The metrics a summary row shows: the fixed headline ones, then benchmark scores (`<task>_acc`, ...). Pure."""
    scores = [k for k in metrics if k.endswith(BENCHMARK_SUFFIXES)]
    return [k for k in HEADLINE_METRICS if k in metrics] + sorted(scores)


def highlights(metrics: Mapping[str, Any]) -> str:
    """A row's highlights: the training loss first -> last (when the stage trained), then the headline metrics."""
    shown = []
    if "loss_start" in metrics and "loss_end" in metrics:
        shown.append(f"loss={fmt(metrics['loss_start'])}→{fmt(metrics['loss_end'])}")
    shown += [f"{k}={fmt(metrics[k])}" for k in headline_metrics(metrics)]
    return ", ".join(shown)


def summary_table(outcomes: Iterable[StageOutcome]) -> Table:
    table = Table(title="Summary")
    for column in ("stage", "kind", "result", "time", "highlights"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        table.add_row(
            o.name,
            o.kind,
            f"[{COLORS[o.result]}]{o.result}[/]",
            f"{o.seconds:.1f}s" if o.seconds else "",
            escape(highlights(o.metrics) or o.reason),  # a model's answer is text, not markup
        )
    return table


def artifacts(stage: str, manifest: Manifest) -> list[tuple[str, str]]:
    """(label, key in the store) of a committed stage's folders (model/, adapter/, report/, tokens/, ...) and of
    each picture in it, in that order. Pure."""
    base = f"{stage}/versions/{manifest.version}"
    folders = sorted({name.split("/", 1)[0] for name in manifest.files if "/" in name})
    pictures = sorted(name for name in manifest.files if name.endswith(".png"))
    return [(f"{folder}/", f"{base}/{folder}") for folder in folders] + [(name, f"{base}/{name}") for name in pictures]


def print_summary(console: Console, outcomes: list[StageOutcome], store: ArtifactStore) -> None:
    console.print(summary_table(outcomes))
    if any("val_loss" in o.metrics for o in outcomes):
        console.print(f"[dim]{VAL_LOSS_NOTE}[/]")
    committed = [o for o in outcomes if o.result in DONE]
    lines = []
    for outcome in committed:
        manifest = store.manifest(outcome.name)
        if manifest is None:
            continue
        for label, key in artifacts(outcome.name, manifest):
            lines.append(f"  {outcome.name:<10} {label:<28} {location(store, key)}")
        if outcome.kind == "eval" and "report/eval.md" in manifest.files:
            key = f"{outcome.name}/versions/{manifest.version}/report/eval.md"
            console.print(f"[bold]{outcome.name} report[/]: {escape(location(store, key))}", soft_wrap=True)
    if lines:
        console.print("[bold]Artifacts[/]")
        for line in lines:
            console.print(line, soft_wrap=True, highlight=False, markup=False)  # paths to copy whole


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)
