"""The `data` stage: read every source, run the configured steps (cleaning, language, filters, decontamination,
PII), drop exact and near duplicates, split train/validation, write the corpus and the run's report.

Artifacts: `corpus/{train,val}-NNNNN.jsonl` (what the tokenizer stage reads), `report/report.json` (+ PNG plots),
and `synthetic/instructions.jsonl` when the spec asks for synthetic data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_platform.api.data import DataSpec
from llm_platform.api.policy import SpecPolicy
from llm_platform.trainer.data.clean import CleanConfig
from llm_platform.trainer.data.decontaminate import DecontaminationConfig, EvalIndex
from llm_platform.trainer.data.filters import FILTERS
from llm_platform.trainer.data.jsonl import write_jsonl
from llm_platform.trainer.data.language import LanguageConfig
from llm_platform.trainer.data.minhash import MinHashConfig
from llm_platform.trainer.data.pii import PIIConfig
from llm_platform.trainer.data.pipeline import PipelineConfig
from llm_platform.trainer.data.report import RunReport, write_report
from llm_platform.trainer.data.run import run_pipeline
from llm_platform.trainer.data.sources import iter_documents
from llm_platform.trainer.data.synthetic import RewardFilterConfig, SyntheticConfig, generate_instructions
from llm_platform.trainer.progress import StepProgress

from .context import StageContext


def _frozen(values: dict[str, Any]) -> dict[str, Any]:
    """Spec values as the library's frozen configs hold them: lists become tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def synthetic_api_key(config: SyntheticConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key for the synthetic-data endpoints: the spec names a credential, this process's site configuration
    (LLMP_CREDENTIALS, or the built-in ones) says which variable holds it and where it may go, checked again here."""
    if config.credential is None:
        return None
    urls = tuple(u for u in (config.endpoint, config.judge_endpoint) if u)
    return SpecPolicy.from_env(environ, strict=False).credential_value(config.credential, urls, environ)


def pipeline_config(spec: DataSpec) -> PipelineConfig:
    """The library's settings for a `data:` section (the spec models mirror the config dataclasses field for field)."""
    filters = tuple(
        (kind, FILTERS[kind].config(**_frozen(getattr(step, kind).model_dump())))
        for step in spec.filters
        for kind in step.kinds()
    )
    return PipelineConfig(
        clean=CleanConfig(**spec.clean.model_dump()),
        language=LanguageConfig(**_frozen(spec.language.model_dump())) if spec.language else None,
        filters=filters,
        decontaminate=(
            DecontaminationConfig(**spec.decontaminate.model_dump(exclude={"sources"})) if spec.decontaminate else None
        ),
        pii=PIIConfig(**_frozen(spec.pii.model_dump())) if spec.pii else None,
        exact_dedup=spec.dedup.exact,
        minhash=MinHashConfig(**spec.dedup.minhash.model_dump()) if spec.dedup.minhash else None,
    )


def metrics(report: RunReport) -> dict[str, Any]:
    """The manifest's metrics: documents in and out, and drops per step under stable names."""
    steps = report.steps
    first = next(iter(steps.values()), None)
    out: dict[str, Any] = {"docs_in": first.seen if first else 0}
    out |= {k: report.splits.get(k, 0) for k in ("train_docs", "val_docs", "train_chars", "val_chars")}
    out["dropped_short"] = steps["clean"].dropped.get("too_short", 0) if "clean" in steps else 0
    out["dropped_duplicate"] = steps["exact_dedup"].seen - steps["exact_dedup"].kept if "exact_dedup" in steps else 0
    if "minhash_dedup" in steps:
        out["dropped_near_duplicate"] = steps["minhash_dedup"].seen - steps["minhash_dedup"].kept
    for name, stats in steps.items():
        if name not in ("clean", "pii", "exact_dedup", "minhash_dedup", "minhash_signature") and stats.seen:
            out[f"dropped_{name}"] = stats.seen - stats.kept
    if "pii" in steps:
        out["pii_docs_redacted"] = steps["pii"].changed
    return out


def run(ctx: StageContext, out: Path) -> dict:
    spec: DataSpec = ctx.stage.data
    config = pipeline_config(spec)
    eval_index = None
    if spec.decontaminate is not None:
        d = spec.decontaminate
        items = (doc.text for source in d.sources for doc in iter_documents(source))
        eval_index = EvalIndex(items, d.ngram, d.min_item_words)
    with StepProgress(ctx.console, "data", unit="documents", listener=ctx.progress) as progress:
        report = run_pipeline(
            spec.sources,
            config,
            out / "corpus",
            ctx.scratch,
            val_fraction=spec.val_fraction,
            engine=spec.engine,
            workers=spec.workers,
            eval_index=eval_index,
            on_batch=progress.advance,
        )
    write_report(report, out / "report", plots=spec.plots)
    result = metrics(report)
    if result["train_docs"] == 0:
        raise ValueError(
            "the data stage kept no training documents; check the sources, `clean.min_chars` and the filters "
            f"(see report/report.json: {', '.join(f'{k}={v}' for k, v in result.items() if k.startswith('dropped'))})"
        )
    if result["val_docs"] == 0:  # eval's perplexity would fail on it, after all the training: say so now
        ctx.console.print(
            f"[yellow]warning[/]: data.val_fraction: the validation split is empty ({spec.val_fraction:g} of "
            f"{result['train_docs']} documents rounds to none); raise val_fraction or add documents"
        )
    if spec.synthetic is not None:
        values = _frozen(spec.synthetic.model_dump())
        if values["reward_filter"] is not None:
            values["reward_filter"] = RewardFilterConfig(**values["reward_filter"])
        config = SyntheticConfig(**values)
        rows, counts = generate_instructions(config, synthetic_api_key(config))
        write_jsonl(rows, out / "synthetic" / "instructions.jsonl")
        result |= {f"synthetic_{k}": v for k, v in counts.items()}
    kept = result["train_docs"] + result["val_docs"]
    ctx.console.print(
        f"[bold]data[/]: {result['docs_in']} documents in, {kept} kept "
        f"({result['dropped_duplicate']} duplicates, {result['dropped_short']} too short), "
        f"{(result['train_chars'] + result['val_chars']) / 1e6:.1f}M characters"
    )
    return result
