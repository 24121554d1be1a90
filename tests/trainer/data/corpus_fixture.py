"""A small mixed corpus for whole-pipeline tests: Wikipedia prose, German and French news, source code, exact and
near duplicates, and prose with personal data planted in it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

from llm_platform.trainer.data.c4 import C4Config
from llm_platform.trainer.data.clean import CleanConfig
from llm_platform.trainer.data.fineweb import FineWebQualityConfig
from llm_platform.trainer.data.gopher import GopherQualityConfig, GopherRepetitionConfig
from llm_platform.trainer.data.language import LanguageConfig
from llm_platform.trainer.data.minhash import MinHashConfig
from llm_platform.trainer.data.pii import PIIConfig
from llm_platform.trainer.data.pipeline import PipelineConfig

from .conftest import flores_lines, squad_paragraphs, stdlib_code


def write_mixed_corpus(folder: Path) -> dict[str, list[str]]:
    rng = random.Random(0)
    wiki = [p for p in squad_paragraphs(min_words=80) if p.count(". ") >= 5][:160]
    german = [" ".join(flores_lines("deu_Latn")[i : i + 8]) for i in range(0, 160, 8)]
    french = [" ".join(flores_lines("fra_Latn")[i : i + 8]) for i in range(0, 80, 8)]
    code = stdlib_code(20)
    near = []
    for p in wiki[:20]:
        words = p.split()
        words.insert(len(words) // 2, "indeed")
        near.append(" ".join(words))
    pii = [p.replace(". ", ". Write to jane.doe@example.com for details. ", 1) for p in wiki[20:30]]
    docs = wiki[30:] + german + french + code + near + wiki[:20] + pii + wiki[40:45]
    rng.shuffle(docs)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mixed.jsonl", "w") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return {"wiki": wiki, "german": german, "near": near, "pii": pii, "code": code}


def jsonl_source(folder: Path) -> SimpleNamespace:
    return SimpleNamespace(
        type="jsonl", path=str(folder / "*.jsonl"), field="text", max_docs=None, include="*", config=None, split="train"
    )


def full_config(batch_size: int = 32) -> PipelineConfig:
    return PipelineConfig(
        clean=CleanConfig(fix_mojibake=True, boilerplate=True),
        language=LanguageConfig(keep=("en",), candidates=("en", "de", "fr")),
        filters=(
            ("gopher_repetition", GopherRepetitionConfig()),
            ("gopher_quality", GopherQualityConfig()),
            ("c4", C4Config()),
            ("fineweb", FineWebQualityConfig()),
        ),
        pii=PIIConfig(),
        minhash=MinHashConfig(),
        batch_size=batch_size,
    )
