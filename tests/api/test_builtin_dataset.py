"""`dataset.path: builtin:stdlib-functions`: built-in data named where a JSONL path goes, in the formats it offers."""

from __future__ import annotations

import pytest

from llm_platform.api.fields import local_path
from llm_platform.api.finetune import AlignSpec, FinetuneSpec
from llm_platform.trainer.data.builtin import builtin_problem, builtin_records


def test_builtin_instruction_and_preference_data_validate_and_name_no_file():
    assert FinetuneSpec(dataset={"path": "builtin:stdlib-functions"}).dataset.path == "builtin:stdlib-functions"
    assert (
        AlignSpec(dataset={"path": "builtin:stdlib-functions", "format": "preference"}).dataset.format == "preference"
    )
    assert local_path("builtin:stdlib-functions") is None  # a site policy sees no file to confine


@pytest.mark.parametrize(
    ("path", "fmt", "words"),
    [
        ("builtin:stdlib-functions", "chat", "has no 'chat' records; it offers instruction and preference"),
        ("builtin:wikipedia", "instruction", "is not a built-in dataset; known: builtin:stdlib-functions"),
    ],
)
def test_a_builtin_dataset_in_a_format_it_lacks_or_unknown_is_a_problem_naming_the_field(path, fmt, words):
    problem = builtin_problem(path, fmt, "finetune.dataset.path")
    assert problem is not None and problem.startswith("finetune.dataset.path: ") and words in problem


def test_the_records_are_the_train_split_in_the_format_asked():
    sft, dpo = (
        builtin_records("builtin:stdlib-functions", "instruction"),
        builtin_records("builtin:stdlib-functions", "preference"),
    )
    assert sft and set(sft[0]) == {"prompt", "response"}
    assert dpo and set(dpo[0]) == {"prompt", "chosen", "rejected"}
    assert all(r["chosen"] != r["rejected"] for r in dpo)
