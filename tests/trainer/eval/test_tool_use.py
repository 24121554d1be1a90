"""Tool use in BFCL's format: the call parser and checker on hand-checked cases, and the task end to end with an
oracle model. The examples are written here in BFCL's published columns (its data is not among the shared files)."""

from __future__ import annotations

import json

import pytest

from llm_platform.trainer.eval.tool_use import call_correct, parse_call

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")

AREA = {
    "name": "calculate_triangle_area",
    "description": "Calculate the area of a triangle given its base and height.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base of the triangle."},
            "height": {"type": "integer", "description": "The height of the triangle."},
            "unit": {"type": "string", "description": "The unit of measure (defaults to 'units')."},
        },
        "required": ["base", "height"],
    },
}
TRUTH = {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}


@pytest.mark.parametrize(
    ("answer", "correct"),
    [
        ("calculate_triangle_area(base=10, height=5)", True),
        ("calculate_triangle_area(base=10, height=5, unit='Units')", True),  # strings: case and spaces ignored
        ("calculate_triangle_area(base=10, height=6)", False),
        ("calculate_triangle_area(base=10)", False),  # a required parameter missing
        ("calculate_triangle_area(base=10, height=5, color='red')", False),  # an unknown parameter
        ("triangle_area(base=10, height=5)", False),
        ("calculate_triangle_area(10, 5)", False),  # positional: BFCL asks for keywords
        ("__import__('os').system('rm -rf /')", False),  # parsed, never run
        ("the area is 25", False),
    ],
)
def test_calls_are_checked_as_bfcls_ast_checker(answer, correct):
    assert call_correct(parse_call(answer), AREA, TRUTH) is correct


def test_a_float_parameter_takes_an_int():
    function = {"name": "f", "parameters": {"properties": {"x": {"type": "float"}}, "required": ["x"]}}
    assert call_correct(parse_call("f(x=2)"), function, {"f": {"x": [2.0]}})


def truth(base: int) -> dict:
    return {"calculate_triangle_area": {"base": [base], "height": [5], "unit": ["units", ""]}}


def write_bfcl(folder, n: int = 3) -> None:
    (folder / "bfcl" / "possible_answer").mkdir(parents=True)
    questions, answers = [], []
    for i in range(n):
        asked = [[{"role": "user", "content": f"Area of a triangle, base {10 + i}, height 5?"}]]
        questions.append({"id": f"simple_{i}", "question": asked, "function": [AREA]})
        answers.append({"id": f"simple_{i}", "ground_truth": [truth(10 + i)]})
    for path, rows in [("BFCL_v3_simple.json", questions), ("possible_answer/BFCL_v3_simple.json", answers)]:
        (folder / "bfcl" / path).write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_task_scores_calls_end_to_end(tmp_path):
    from .test_generative_tasks import score

    write_bfcl(tmp_path)
    right = score(
        "bfcl_simple",
        lambda doc: (
            f" calculate_triangle_area(base={json.loads(doc['truth'])['calculate_triangle_area']['base'][0]}, height=5)"
        ),
        3,
        tmp_path,
    )  # noqa: E501
    assert right == {"call_accuracy,none": 1.0, "valid_call,none": 1.0}
    wrong = score("bfcl_simple", lambda doc: " calculate_triangle_area(base=1, height=5)", 3, tmp_path)
    assert wrong == {"call_accuracy,none": 0.0, "valid_call,none": 1.0}
