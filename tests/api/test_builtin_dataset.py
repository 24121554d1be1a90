"""`dataset.builtin`: the built-in stdlib-functions data instead of `path`, exactly one of the two."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llm_platform.api.finetune import AlignSpec, DatasetRef, FinetuneSpec


def test_builtin_instruction_and_preference_data_validate():
    assert FinetuneSpec(dataset={"builtin": "stdlib-functions"}).dataset.path is None
    assert AlignSpec(dataset={"builtin": "stdlib-functions", "format": "preference"}).dataset.builtin


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({}, "set one of `path` (JSONL files) or `builtin` (stdlib-functions)"),
        ({"path": "a.jsonl", "builtin": "stdlib-functions"}, "set one of `path`"),
        ({"builtin": "stdlib-functions", "format": "chat"}, "comes as format instruction or preference, not chat"),
        ({"builtin": "wikipedia"}, "stdlib-functions"),
    ],
)
def test_a_dataset_names_one_source_the_builtin_one_as_instruction_or_preference(dataset, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DatasetRef(**dataset)
