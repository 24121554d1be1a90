"""The built-in instruction and preference data: standard-library functions asked for by docstring."""

from __future__ import annotations

import ast
import json

import pytest

from llm_platform.trainer.data import stdlib_functions as sf
from llm_platform.trainer.data.jsonl import write_jsonl

SOURCE = '''
def clamp(value, low, high):
    """Limit value to the range low..high.

    More words that stay out of the prompt."""
    if value < low:
        return low
    return min(value, high)


def join_words(words, sep):
    """Join the words with sep between them."""
    out = words[0]
    for word in words[1:]:
        out = out + sep + word
    return out


def _private(x):
    """Not public."""
    return x


def undocumented(x):
    return x
'''


def test_documented_public_functions_become_prompts_without_their_docstring():
    functions = list(sf.functions_in(SOURCE, "toy"))
    assert [f.name for f in functions] == ["clamp", "join_words"]
    clamp = functions[0]
    expected = "Write a Python function `clamp(value, low, high)` that: Limit value to the range low..high."
    assert clamp.prompt() == expected
    assert clamp.code.startswith("def clamp(value, low, high):\n    if value < low:")
    assert '"""' not in clamp.code


def test_a_planted_bug_changes_one_spot_and_keeps_the_signature():
    clamp = next(sf.functions_in(SOURCE, "toy"))
    wrong = sf.plant_bug(clamp.node, seed="x")
    assert wrong is not None and wrong != clamp.code
    tree = ast.parse(wrong).body[0]
    assert ast.unparse(tree.args) == "value, low, high"
    differing = [a for a, b in zip(clamp.code.splitlines(), wrong.splitlines(), strict=True) if a != b]
    assert len(differing) == 1
    assert sf.plant_bug(clamp.node, seed="x") == wrong  # the same seed, the same bug


def test_a_transplanted_body_speaks_the_recipients_parameter_names():
    clamp, join = sf.functions_in(SOURCE, "toy")
    donor = next(sf.functions_in("def f(a, b):\n    'Doc.'\n    return a + b * 2\n", "m"))
    swapped = sf.transplant(join.node, donor.node)
    assert ast.unparse(swapped) == "def join_words(words, sep):\n    return words + sep * 2"
    assert sf.pick_donor(clamp, [clamp, join]) is None  # no other function with three parameters


@pytest.fixture(scope="module")
def library():
    return {
        (kind, split): sf.records(kind, split) for kind in ("instruction", "preference") for split in ("train", "test")
    }


def test_the_library_gives_hundreds_of_pairs_deterministically_and_bounded(library):
    train, test = library["instruction", "train"], library["instruction", "test"]
    assert len(train) > 300 and 20 < len(test) < len(train) / 3
    assert sf.records("instruction", "test") == test  # the same on every call
    assert sf.records("instruction", "train", max_records=7) == train[:7]
    for row in train + test:
        assert len(row["response"]) <= sf.MAX_CODE_CHARS
        ast.parse(row["response"])  # real Python
    assert len({row["response"] for row in train + test}) == len(train) + len(test)  # deduplicated


def test_held_out_functions_are_never_in_the_training_split(library):
    for kind in ("instruction", "preference"):
        train = {row["prompt"] for row in library[kind, "train"]}
        test = {row["prompt"] for row in library[kind, "test"]}
        assert train and test and not train & test


def test_every_rejected_answer_is_wrong_code_with_the_same_signature(library):
    pairs = library["preference", "train"] + library["preference", "test"]
    assert len(pairs) > 300
    for row in pairs:
        chosen, rejected = ast.parse(row["chosen"]).body[0], ast.parse(row["rejected"]).body[0]
        assert row["chosen"] != row["rejected"]
        assert ast.unparse(chosen.args) == ast.unparse(rejected.args) and chosen.name == rejected.name
    transplanted = [r for r in pairs if r["chosen"].count("\n") != r["rejected"].count("\n")]
    assert transplanted, "some pairs take another function's body"


def test_write_jsonl_round_trips(tmp_path, library):
    rows = library["preference", "test"][:3]
    path = write_jsonl(rows, tmp_path / "d" / "pairs.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
