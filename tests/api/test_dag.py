import pytest

from llm_platform.api import load_job
from llm_platform.api.dag import (
    EXTERNAL,
    ancestors,
    descendants,
    find_cycle,
    graph_problems,
    input_sources,
    topological_order,
)
from tests.api.test_validation import GOOD


def test_order_ancestry_and_inputs():
    stages = load_job(GOOD).spec.stages
    assert topological_order(stages) == ["data", "tok", "pretrain", "eval"]
    assert ancestors(stages, "eval") == ["pretrain", "tok", "data"]
    assert descendants(stages, "tok") == ["pretrain", "eval"]
    assert input_sources(stages, "eval") == {"model": "pretrain", "tokens": "tok"}
    assert input_sources(stages, "pretrain") == {"tokens": "tok", "tokenizer": "tok"}


def test_model_from_a_checkpoint_is_an_external_input():
    text = GOOD.replace("model: {preset: llama-tiny}", "model: {from: s3://bucket/llama}")
    text = text.split("  - name: pretrain")[0] + "  - {name: eval, kind: eval, needs: [tok]}\n"
    stages = load_job(text).spec.stages
    assert input_sources(stages, "eval", ["model"]) == {"model": EXTERNAL, "tokens": "tok"}


class _Counter:
    ops = 0


class _Name(str):
    """A stage name that counts every hash and comparison: dict and set lookups, list membership, sorting keys."""

    __slots__ = ()

    def __hash__(self):
        _Counter.ops += 1
        return str.__hash__(self)

    def __eq__(self, other):
        _Counter.ops += 1
        return str.__eq__(self, other)


class _Stage:
    """A stage whose every read of `needs`, `inputs` and `outputs` is counted too."""

    def __init__(self, name, kind, needs):
        self.name, self.kind, self._needs = name, kind, needs

    @property
    def needs(self):
        _Counter.ops += 1
        return self._needs

    @property
    def inputs(self):
        _Counter.ops += 1
        return {"data": (), "tokenizer": ("corpus",)}[self.kind]

    @property
    def outputs(self):
        _Counter.ops += 1
        return {"data": ("corpus",), "tokenizer": ("tokenizer", "tokens")}[self.kind]


def _graph(n: int, fan_in: int) -> list[_Stage]:
    """n stages; each after the first needs the `fan_in` stages before it (fan_in=1: one long chain)."""
    names = [_Name(f"s{i}") for i in range(n)]
    return [
        _Stage(names[i], "data" if i == 0 else "tokenizer", [names[j] for j in range(max(0, i - fan_in), i)])
        for i in range(n)
    ]


def _ops(run, stages) -> int:
    _Counter.ops = 0
    run(stages)
    return _Counter.ops


GRAPH_CHECKS = {
    "graph_problems": graph_problems,
    "topological_order": topological_order,
    "find_cycle": find_cycle,
    "ancestors": lambda stages: ancestors(stages, stages[-1].name),
    "descendants": lambda stages: descendants(stages, stages[0].name),
}


@pytest.mark.parametrize("fan_in", [1, 3])
@pytest.mark.parametrize("check", list(GRAPH_CHECKS))
def test_graph_checks_take_linear_time(check, fan_in):
    """Counted operations grow like stages + edges: 4x the stages costs about 4x (the old checks were ~cubic; a
    3,000-long chain also overflowed the recursion limit of the cycle search)."""
    run = GRAPH_CHECKS[check]
    small, large = _ops(run, _graph(1000, fan_in)), _ops(run, _graph(4000, fan_in))
    assert 3.5 <= large / small <= 4.5, (small, large)


def test_a_long_chain_with_a_cycle_is_found_without_recursion():
    stages = _graph(20_000, 1)
    stages[0]._needs = [stages[-1].name]
    cycle = find_cycle(stages)
    assert len(cycle) == 20_000 and cycle[0] == "s0"
    with pytest.raises(ValueError, match="cycle"):
        topological_order(stages)


def test_order_groups_stages_by_depth_and_keeps_spec_order():
    a, b, c, d = (_Stage(n, "data", needs) for n, needs in [("a", []), ("b", ["a"]), ("c", []), ("d", ["b", "c"])])
    assert topological_order([a, b, c, d]) == ["a", "c", "b", "d"]
    assert descendants([a, b, c, d], "c") == ["d"] and ancestors([a, b, c, d], "d") == ["b", "c", "a"]
