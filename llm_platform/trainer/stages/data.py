"""The `data` stage: read every source, clean, drop exact duplicates, split train/validation, write the corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.progress import Progress

from llm_platform.trainer.data.clean import clean_text
from llm_platform.trainer.data.corpus import CorpusWriter
from llm_platform.trainer.data.dedup import ExactDedup, is_validation
from llm_platform.trainer.data.sources import iter_documents

from .context import StageContext


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.data
    counts: Counter[str] = Counter()
    dedup = ExactDedup() if spec.dedup.exact else None
    writer = CorpusWriter(out / "corpus")
    with Progress(console=ctx.console, transient=True) as progress:
        task = progress.add_task("reading documents", total=None)
        for source in spec.sources:
            for doc in iter_documents(source):
                counts["docs_in"] += 1
                progress.advance(task)
                text = clean_text(doc.text, spec.clean.normalize, spec.clean.strip_control, spec.clean.max_chars)
                if len(text) < spec.clean.min_chars:
                    counts["dropped_short"] += 1
                    continue
                if dedup is not None and not dedup.is_new(text):
                    counts["dropped_duplicate"] += 1
                    continue
                split = "val" if is_validation(text, spec.val_fraction) else "train"
                writer.write(split, doc.id, text)
                counts[f"{split}_docs"] += 1
                counts[f"{split}_chars"] += len(text)
    writer.close()
    if counts["train_docs"] == 0:
        raise ValueError("the data stage kept no training documents; check the sources and `clean.min_chars`")
    kept = counts["train_docs"] + counts["val_docs"]
    ctx.console.print(
        f"[bold]data[/]: {counts['docs_in']} documents in, {kept} kept "
        f"({counts['dropped_duplicate']} duplicates, {counts['dropped_short']} too short), "
        f"{(counts['train_chars'] + counts['val_chars']) / 1e6:.1f}M characters"
    )
    return dict(counts)
