"""Data-pipeline throughput: our heuristic filter stack and MinHash dedup against datatrove's, in one run.

    python bench/data.py                  # 2000 documents from ../shared/data
    python bench/data.py --docs 500       # quicker
    python bench/data.py --json out.json  # also write the numbers

The heuristic stack is FineWeb's: Gopher repetition -> Gopher quality -> C4 quality -> FineWeb quality, defaults
(published thresholds) on both sides, each document going through the filters in that order until one drops it.
Ours runs through the library's `Pipeline` (the stage's code path, stats included); datatrove's filters are called
directly (`filter(doc)`, without its pipeline bookkeeping). Both run in this one process, one core, on the same
documents: Project Gutenberg novels in chunks, WikiText and SQuAD (Wikipedia), Shakespeare, and Python source code.
Throughput is documents per CPU-second of this process (docs/s/core); wall-clock rates are printed too. Agreement is
the share of documents both stacks keep or both drop.

MinHash: our signatures + LSH band keys + clustering, against datatrove's signature computation alone
(`get_shingles` + `get_signature`, the compute of its first stage; its bucket and cluster stages run later over files).
datatrove is a bench-only dependency (pip install datatrove spacy); the library never imports it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_platform.trainer.data.c4 import C4Config  # noqa: E402
from llm_platform.trainer.data.document import Document  # noqa: E402
from llm_platform.trainer.data.filters import build_filter  # noqa: E402
from llm_platform.trainer.data.fineweb import FineWebQualityConfig  # noqa: E402
from llm_platform.trainer.data.gopher import GopherQualityConfig, GopherRepetitionConfig  # noqa: E402
from llm_platform.trainer.data.minhash import MinHasher, cluster  # noqa: E402
from llm_platform.trainer.data.steps import Pipeline  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bench_documents(n: int) -> list[str]:
    """`n` documents spread evenly over five kinds of real text (kept and dropped by the filters alike)."""
    if not SHARED_DATA.is_dir():
        sys.exit(f"shared data not found under {SHARED_DATA}")
    docs: list[str] = []
    for book in sorted((SHARED_DATA / "corpus" / "gutenberg").glob("*.txt")):
        paragraphs = book.read_text(encoding="utf-8-sig").replace("\r\n", "\n").split("\n\n")
        docs += ["\n\n".join(paragraphs[i : i + 25]) for i in range(0, len(paragraphs), 25)]
    wikitext = (SHARED_DATA / "wikitext2" / "valid.txt").read_text(encoding="utf-8")
    docs += [a for a in re.split(r"\n = (?=[^=])", wikitext) if a.strip()]
    squad = json.loads((SHARED_DATA / "squad_v1.1" / "dev-v1.1.json").read_text())
    docs += [p["context"] for article in squad["data"] for p in article["paragraphs"]]
    shakespeare = (SHARED_DATA / "corpus" / "tinyshakespeare" / "input.txt").read_text()
    docs += [shakespeare[i : i + 3000] for i in range(0, len(shakespeare), 3000)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))]
    step = max(1, len(docs) // n)
    return docs[::step][:n]


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Result, CPU seconds of this process, wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def ours_filters(texts: list[str]) -> list[bool]:
    pipeline = Pipeline(
        [
            build_filter("gopher_repetition", GopherRepetitionConfig()),
            build_filter("gopher_quality", GopherQualityConfig()),
            build_filter("c4", C4Config()),
            build_filter("fineweb", FineWebQualityConfig()),
        ]
    )
    docs = [Document(str(i), t, "bench") for i, t in enumerate(texts)]
    kept = {d.id for d in pipeline.run(docs)}
    return [str(i) in kept for i in range(len(texts))]


def datatrove_filters(texts: list[str]) -> list[bool]:
    from datatrove.data import Document as DtDocument
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    stack = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    keep = []
    for i, text in enumerate(texts):
        doc = DtDocument(text=text, id=str(i))
        keep.append(all(f.filter(doc) is True for f in stack))  # all() stops at the first filter that drops
    return keep


def ours_minhash(texts: list[str]) -> int:
    hasher = MinHasher()
    keys = np.stack([hasher.keys(t) for t in texts])
    return int((~cluster(keys).keep).sum())


def datatrove_minhash(texts: list[str]) -> int:
    import xxhash
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(prefix="llmp-bench-"))  # nothing is written there
    # datatrove passes str to xxhash, which xxhash 4 refuses; encode first, as older xxhash did inside
    step._hash_func = lambda text: xxhash.xxh64_intdigest(text.encode())
    return len([step.get_signature(step.get_shingles(t)) for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        datatrove_version = importlib.metadata.version("datatrove")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("the baseline needs datatrove: pip install datatrove spacy")

    texts = bench_documents(args.docs)
    datatrove_filters(texts[:5])  # load spaCy's tokenizer outside the timed region
    datatrove_minhash(texts[:5])
    print(f"{len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} M characters; datatrove {datatrove_version}")

    results: dict[str, dict[str, float]] = {}
    ours_keep, ours_cpu, ours_wall = timed(lambda: ours_filters(texts))
    theirs_keep, theirs_cpu, theirs_wall = timed(lambda: datatrove_filters(texts))
    agree = float(np.mean(np.array(ours_keep) == np.array(theirs_keep)))
    results["heuristic_filters"] = {
        "ours_docs_per_s_core": len(texts) / ours_cpu,
        "datatrove_docs_per_s_core": len(texts) / theirs_cpu,
        "ratio": theirs_cpu / ours_cpu,
        "ours_docs_per_s_wall": len(texts) / ours_wall,
        "datatrove_docs_per_s_wall": len(texts) / theirs_wall,
        "ours_kept": int(sum(ours_keep)),
        "datatrove_kept": int(sum(theirs_keep)),
        "agreement": agree,
    }
    _, ours_cpu, ours_wall = timed(lambda: ours_minhash(texts))
    _, theirs_cpu, theirs_wall = timed(lambda: datatrove_minhash(texts))
    results["minhash"] = {
        "ours_docs_per_s_core": len(texts) / ours_cpu,
        "datatrove_signature_docs_per_s_core": len(texts) / theirs_cpu,
        "ratio": theirs_cpu / ours_cpu,
    }

    h, m = results["heuristic_filters"], results["minhash"]
    print("\nheuristic stack (Gopher repetition + Gopher quality + C4 + FineWeb), one core:")
    for side in ("ours", "datatrove"):
        core, wall = h[f"{side}_docs_per_s_core"], h[f"{side}_docs_per_s_wall"]
        print(f"  {side:<10} {core:8.0f} docs/s/core   (wall clock {wall:.0f} docs/s)")
    print(f"  ratio      {h['ratio']:8.1f}x")
    print(
        f"  kept: ours {h['ours_kept']}, datatrove {h['datatrove_kept']} of {len(texts)}; "
        f"same decision on {100 * h['agreement']:.1f}% of documents"
    )
    print("\nMinHash dedup (5-grams, 14 bands x 8 rows), one core:")
    print(f"  ours (signatures + LSH + clusters)  {m['ours_docs_per_s_core']:8.0f} docs/s/core")
    print(f"  datatrove (signatures only)         {m['datatrove_signature_docs_per_s_core']:8.0f} docs/s/core")
    print(f"  ratio                               {m['ratio']:8.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"docs": len(texts), "datatrove": datatrove_version, **results}, indent=2))


if __name__ == "__main__":
    main()
