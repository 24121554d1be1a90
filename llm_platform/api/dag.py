"""The stage graph: order, ancestry and where each stage's inputs come from. Pure functions over a list of stages."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from .errors import Problem
from .stage import OUTPUTS, Stage


class StageLike(Protocol):
    name: str
    needs: list[str]


EXTERNAL = "<spec.model.from>"


def graph_problems(stages: Sequence[Stage], external: Sequence[str] = ()) -> list[Problem]:
    """Every structural problem of the graph: duplicates, unknown needs, cycles, inputs nobody provides.

    `external` names artifacts available without a producing stage (e.g. `model` when spec.model.from is set).
    """
    problems = naming_problems(stages)
    if problems:
        return problems
    for i, stage in enumerate(stages):
        sources = input_sources(stages, stage.name, external)
        for artifact in stage.inputs:
            if artifact not in sources:
                producers = [kind for kind, outs in OUTPUTS.items() if artifact in outs]
                problems.append(
                    Problem(
                        ("spec", "stages", i, "needs"),
                        f"{_a(stage.kind)} stage reads `{artifact}`, but none of the stages it needs "
                        f"(directly or through their needs) produces it; add a stage of kind "
                        f"{' or '.join(producers)} to `needs`"
                        + (" or set spec.model.from" if artifact == "model" else ""),
                    )
                )
    return problems


def naming_problems(stages: Sequence[StageLike]) -> list[Problem]:
    """Duplicate names, `needs` naming unknown stages, and cycles. Works on anything with `.name` and `.needs`, so it
    also runs on stages that failed their own validation (all problems of a spec are reported in one pass)."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, stage in enumerate(stages):
        if stage.name in seen:
            problems.append(
                Problem(
                    ("spec", "stages", i, "name"),
                    f"duplicate stage name '{stage.name}' (also stages[{seen[stage.name]}]); "
                    "give every stage a unique name",
                )
            )
        seen.setdefault(stage.name, i)
    for i, stage in enumerate(stages):
        for j, need in enumerate(stage.needs):
            if need not in seen:
                problems.append(
                    Problem(
                        ("spec", "stages", i, "needs", j),
                        f"'{need}' is not a stage of this job; stages are: {', '.join(seen)}",
                    )
                )
    if problems:
        return problems
    cycle = find_cycle(stages)
    if cycle:
        return [
            Problem(
                ("spec", "stages", seen[cycle[0]], "needs"),
                f"stages form a cycle: {' -> '.join(cycle + [cycle[0]])}; remove one of these `needs`",
            )
        ]
    return []


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} '{word}'"


def find_cycle(stages: Sequence[StageLike]) -> list[str]:
    """A list of stage names forming a cycle through `needs`, or [] when the graph is acyclic."""
    needs = {s.name: s.needs for s in stages}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for need in needs.get(name, ()):
            if state.get(need) == 1:
                return path[path.index(need) :]
            if need not in state and (found := visit(need)):
                return found
        path.pop()
        state[name] = 2
        return []

    for stage in stages:
        if stage.name not in state and (found := visit(stage.name)):
            return found
    return []


def topological_order(stages: Sequence[Stage]) -> list[str]:
    """Stage names so that every stage comes after its needs; ties keep the order of the spec."""
    position = {s.name: i for i, s in enumerate(stages)}
    waiting = {s.name: set(s.needs) for s in stages}
    order: list[str] = []
    while waiting:
        ready = sorted((n for n, w in waiting.items() if not w), key=position.__getitem__)
        if not ready:
            raise ValueError(f"stage graph has a cycle: {find_cycle(stages)}")
        for name in ready:
            order.append(name)
            del waiting[name]
        for w in waiting.values():
            w.difference_update(ready)
    return order


def ancestors(stages: Sequence[Stage], name: str) -> list[str]:
    """Stages reachable through `needs`, nearest first (breadth-first, in `needs` order)."""
    by_name = {s.name: s for s in stages}
    found: list[str] = []
    queue = deque(by_name[name].needs)
    while queue:
        current = queue.popleft()
        if current in found:
            continue
        found.append(current)
        queue.extend(by_name[current].needs)
    return found


def descendants(stages: Sequence[Stage], name: str) -> list[str]:
    """Stages that (transitively) need `name`, in topological order."""
    return [s for s in topological_order(stages) if name in ancestors(stages, s)]


def input_sources(stages: Sequence[Stage], name: str, external: Sequence[str] = ()) -> dict[str, str]:
    """For each artifact the stage reads: the nearest ancestor producing it, or EXTERNAL when it comes from the spec."""
    by_name = {s.name: s for s in stages}
    sources: dict[str, str] = {}
    for ancestor in ancestors(stages, name):
        for artifact in by_name[ancestor].outputs:
            sources.setdefault(artifact, ancestor)
    for artifact in external:
        sources.setdefault(artifact, EXTERNAL)
    return {a: sources[a] for a in by_name[name].inputs if a in sources}
