"""The data pipeline: sources, cleaning, filters, deduplication, corpus shards, token files and batches.

Module map (each step is a small function or class over a `Document`, with a frozen config dataclass whose defaults
are the published thresholds):

- `sources`: local files/globs, JSONL, Parquet, S3 prefixes, Hugging Face datasets; streamed and shardable.
- `clean`: Unicode form, mojibake, control characters, boilerplate lines, length bounds.
- `language`: lingua language ID. `gopher`, `c4`, `fineweb`: heuristic quality rules (`analysis` measures texts).
- `classifier` (hashed n-gram fastText-style), `perplexity` (a small model of ours), `toxicity`, `pii`,
  `decontaminate`: model-based and content filters.
- `dedup` (exact, and the train/val split), `minhash` (MinHash + LSH + clusters), `hashing` (stable n-gram hashes).
- `steps` (step protocol, stats), `pipeline` (config -> steps), `engines` (local processes or Ray Data), `run` (a
  whole run: steps, dedup, corpus, report), `report` (JSON + PNG).
- `corpus` (JSONL corpus shards), `pack` (flat token files), `shards` (sharded token files), `batching` (fine-tuning
  packing and dynamic batching, resumable), `synthetic` (instruction data from an OpenAI-compatible endpoint, with
  an optional reward-model filter).
- `safety`: refusal pairs, a critique-and-revise pass through the inference engine, refusal rates.
- `loader`: the pretraining loader (owned with the training loop).

Importing this package imports nothing heavy; torch, lingua, Ray and matplotlib load only when a step needs them.
"""
