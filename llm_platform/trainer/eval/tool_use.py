"""Tool use: does the model call the right function with the right arguments, given the tools as JSON schemas?

Data in the format of the Berkeley Function Calling Leaderboard (BFCL, Patil et al., gorilla-llm/gorilla,
`berkeley-function-call-leaderboard`): a question file of JSON lines `{id, question: [[{role, content}, ...]],
function: [{name, description, parameters: <JSON schema>}]}` and a possible-answer file of JSON lines `{id,
ground_truth: [{<function name>: {<parameter>: [acceptable values]}}]}`, where "" among the values marks an optional
parameter that may be left out. Files under `eval.data_dir`: `bfcl/BFCL_v3_simple.json` and
`bfcl/possible_answer/BFCL_v3_simple.json` (the `simple` category: one call per question).

The model answers with one Python-syntax call, `name(param=value, ...)`, as BFCL prompts models without native
function calling; the call is parsed with `ast` (never evaluated) and checked as BFCL's AST checker does: the function
name, every required parameter present, no unknown parameter, each value among the acceptable ones (strings compared
case-insensitively without spaces and punctuation, an int accepted for a float).
"""

from __future__ import annotations

import ast
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

from .benchmark_files import BenchmarkDataError, benchmark_file, read_jsonl
from .task_building import ConfigurableTask, DatasetDict, build_task, splits

QUESTIONS = "bfcl/BFCL_v3_simple.json"
ANSWERS = "bfcl/possible_answer/BFCL_v3_simple.json"
_IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^'\"]")

INSTRUCTIONS = (
    "You can call the functions described below (as JSON schemas). Answer the question with exactly one call in "
    "Python syntax, name(param=value, ...), and nothing else.\n\nFunctions:\n{functions}\n\nQuestion: {question}\nCall:"
)


def parse_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """(function name, keyword arguments) of the first line of `text` if it is one call with literal keyword
    arguments, else None."""
    line = text.strip().splitlines()[0].strip().strip("`") if text.strip() else ""
    try:
        node = ast.parse(line, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or node.args:
        return None
    name = ast.unparse(node.func)
    try:
        return name, {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
    except (ValueError, SyntaxError):
        return None


def _same(value: Any, acceptable: Any, kind: str | None) -> bool:
    if isinstance(value, str) and isinstance(acceptable, str):
        return _IGNORED_IN_STRINGS.sub("", value).lower() == _IGNORED_IN_STRINGS.sub("", acceptable).lower()
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, tuple):
        value = list(value)
    return value == acceptable and type(value) is type(acceptable)


def call_correct(call: tuple[str, dict[str, Any]] | None, function: dict, truth: dict[str, dict[str, list]]) -> bool:
    """Whether `call` is right for a question whose one expected call is `truth` ({name: {param: [acceptable]}})."""
    if call is None:
        return False
    name, arguments = call
    ((expected_name, expected),) = truth.items()
    if name != expected_name or name != function["name"]:
        return False
    properties = function.get("parameters", {}).get("properties", {})
    required = function.get("parameters", {}).get("required", [])
    if any(param not in arguments for param in required) or any(param not in expected for param in arguments):
        return False
    for param, acceptable in expected.items():
        if param not in arguments:
            if "" not in acceptable:
                return False
            continue
        kind = properties.get(param, {}).get("type")
        if not any(_same(arguments[param], option, kind) for option in acceptable if option != ""):
            return False
    return True


def _records(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    questions = read_jsonl(benchmark_file(data_dir, QUESTIONS), ("id", "question", "function"))
    answers = {
        a["id"]: a["ground_truth"] for a in read_jsonl(benchmark_file(data_dir, ANSWERS), ("id", "ground_truth"))
    }
    rows = []
    for q in questions:
        if q["id"] not in answers:
            raise BenchmarkDataError(f"{ANSWERS}: no ground truth for question {q['id']}")
        truth = answers[q["id"]]
        if len(q["function"]) != 1 or len(truth) != 1:
            raise BenchmarkDataError(f"{QUESTIONS}: question {q['id']} is not a single-function, single-call question")
        user = [turn["content"] for turn in q["question"][0] if turn.get("role") == "user"]
        rows.append(
            {
                "id": q["id"],
                "question": user[-1] if user else "",
                "function": json.dumps(q["function"][0]),
                "truth": json.dumps(truth[0]),
            }
        )
    return splits(test=rows)


def _prompt(doc: dict) -> str:
    return INSTRUCTIONS.format(functions=doc["function"], question=doc["question"])


def _score(doc: dict, results: list[str]) -> dict[str, float]:
    call = parse_call(results[0])
    function, truth = json.loads(doc["function"]), json.loads(doc["truth"])
    return {
        "call_accuracy": float(call_correct(call, function, truth)),
        "valid_call": float(call is not None and call[0] == function["name"]),
    }


def bfcl_simple(data_dir: str | Path) -> ConfigurableTask:
    """BFCL's `simple` category: accuracy of the single expected call, and how often the answer is a parsable call
    of the offered function at all."""
    return build_task(
        {
            "task": "bfcl_simple",
            "custom_dataset": partial(_records, str(data_dir)),
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": _prompt,
            "doc_to_target": "truth",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 128, "do_sample": False},
            "process_results": _score,
            "metric_list": [
                {"metric": "call_accuracy", "aggregation": "mean", "higher_is_better": True},
                {"metric": "valid_call", "aggregation": "mean", "higher_is_better": True},
            ],
            "metadata": {"version": 1.0},
        }
    )
