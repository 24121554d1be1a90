"""The stage graph: order, ancestry and where each stage's inputs come from. Pure functions over a list of stages.

Every function here runs in time linear in the size of the graph (stages plus `needs` edges; `topological_order` adds
a sort) and without recursion, so a hostile spec with thousands of stages or a long `needs` chain costs milliseconds,
never a RecursionError. tests/api/test_dag.py holds them to that by counting operations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from .errors import Problem, shorten
from .stage import OUTPUTS, Stage, a_or_an


class StageLike(Protocol):
    name: str
    needs: list[str]


EXTERNAL = "<spec.model.from>"
_NAMES_SHOWN = 12  # how many stage names an "unknown stage" message lists


def graph_problems(stages: Sequence[Stage], external: Sequence[str] = ()) -> list[Problem]:
    """Every structural problem of the graph: duplicates, unknown needs, cycles, inputs nobody provides.

    `external` names artifacts available without a producing stage (e.g. `model` when spec.model.from is set).
    """
    problems = naming_problems(stages)
    if problems:
        return problems
    available = upstream_artifacts(stages)
    for i, stage in enumerate(stages):
        have = available[stage.name]
        for artifact in stage.inputs:
            if artifact not in have and artifact not in external:
                producers = [kind for kind, outs in OUTPUTS.items() if artifact in outs]
                problems.append(
                    Problem(
                        ("spec", "stages", i, "needs"),
                        f"{a_or_an(stage.kind)} stage reads `{artifact}`, but none of the stages it needs "
                        f"(directly or through their needs) produces it; add a stage of kind "
                        f"{' or '.join(producers)} to `needs`"
                        + (" or set spec.model.from" if artifact == "model" else ""),
                    )
                )
        problem = _model_from_problem(stages, stage)
        if problem:
            problems.append(Problem(("spec", "stages", i, "model", "from"), problem))
    return problems


def _model_from_problem(stages: Sequence[Stage], stage: Stage) -> str | None:
    """Why the stage's `model.from` cannot be where its model comes from, or None."""
    model = getattr(stage, "model", None)
    source = model.from_ if model is not None else None
    if source is None:
        return None
    producers = [s.name for s in stages if "model" in s.outputs]
    if source not in ancestors(stages, stage.name) or source not in producers:
        upstream = [name for name in ancestors(stages, stage.name) if name in producers]
        return (
            f"'{shorten(source, 80)}' is not a stage producing a model among this stage's needs (directly or through "
            f"theirs); choose one of: {', '.join(upstream) or 'none (add the stage to `needs`)'}"
        )
    return None


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
                    f"duplicate stage name '{shorten(str(stage.name), 80)}' (also stages[{seen[stage.name]}]); "
                    "give every stage a unique name",
                )
            )
        seen.setdefault(stage.name, i)
    names = _some_names(seen)
    for i, stage in enumerate(stages):
        for j, need in enumerate(stage.needs):
            if need not in seen:
                message = f"'{shorten(str(need), 80)}' is not a stage of this job; stages are: {names}"
                problems.append(Problem(("spec", "stages", i, "needs", j), message))
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


def _some_names(seen: dict[str, int]) -> str:
    """The first stage names, enough to spot a typo; a message must not grow with the size of a hostile spec."""
    shown = ", ".join(shorten(str(name), 80) for name, _ in zip(seen, range(_NAMES_SHOWN), strict=False))
    return shown + (f", ... ({len(seen)} stages)" if len(seen) > _NAMES_SHOWN else "")


def find_cycle(stages: Sequence[StageLike]) -> list[str]:
    """A list of stage names forming a cycle through `needs`, or [] when the graph is acyclic.

    Depth-first search with an explicit stack (a 3,000-long chain must not hit Python's recursion limit); needs that
    name no stage are ignored here (naming_problems reports them)."""
    needs = {s.name: s.needs for s in stages}
    done: set[str] = set()
    for root in needs:
        if root in done:
            continue
        path = [root]
        on_path = {root: 0}  # name -> index in path
        pending = [iter(needs[root])]
        while pending:
            for need in pending[-1]:
                if need in on_path:
                    return path[on_path[need] :]
                if need in needs and need not in done:
                    on_path[need] = len(path)
                    path.append(need)
                    pending.append(iter(needs[need]))
                    break
            else:  # every need of path[-1] explored
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                pending.pop()
    return []


def topological_order(stages: Sequence[StageLike]) -> list[str]:
    """Stage names so that every stage comes after its needs. Stages are grouped by depth (the longest `needs` chain
    below them) and ties keep the order of the spec, so independent stages start together and in a stable order."""
    names = [s.name for s in stages]
    position = {name: i for i, name in enumerate(names)}
    missing = {s.name: len(set(s.needs)) for s in stages}  # needs not yet placed
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for stage in stages:
        for need in set(stage.needs):
            if need in dependents:
                dependents[need].append(stage.name)
    depth = dict.fromkeys(names, 0)
    ready = deque(name for name in names if missing[name] == 0)
    placed: list[str] = []
    while ready:
        current = ready.popleft()
        placed.append(current)
        for dependent in dependents[current]:
            depth[dependent] = max(depth[dependent], depth[current] + 1)
            missing[dependent] -= 1
            if missing[dependent] == 0:
                ready.append(dependent)
    if len(placed) != len(names):
        raise ValueError(f"stage graph has a cycle or an unknown need: {find_cycle(stages) or sorted(missing)}")
    return sorted(placed, key=lambda name: (depth[name], position[name]))


def ancestors(stages: Sequence[StageLike], name: str) -> list[str]:
    """Stages reachable through `needs`, nearest first (breadth-first, in `needs` order)."""
    needs = {s.name: s.needs for s in stages}
    return _reachable(needs, needs[name])


def descendants(stages: Sequence[StageLike], name: str) -> list[str]:
    """Stages that (transitively) need `name`, in topological order."""
    dependents: dict[str, list[str]] = {s.name: [] for s in stages}
    for stage in stages:
        for need in stage.needs:
            if need in dependents:
                dependents[need].append(stage.name)
    below = set(_reachable(dependents, dependents[name]))
    return [s for s in topological_order(stages) if s in below]


def _reachable(edges: dict[str, list[str]], start: Iterable[str]) -> list[str]:
    """Names reachable from `start` along `edges`, breadth-first, each once."""
    found: dict[str, None] = {}
    queue = deque(start)
    while queue:
        current = queue.popleft()
        if current in found:
            continue
        found[current] = None
        queue.extend(edges.get(current, ()))
    return list(found)


def upstream_artifacts(stages: Sequence[Stage]) -> dict[str, frozenset[str]]:
    """For each stage, the artifacts some stage among its ancestors produces: one pass in topological order, each
    edge visited once (the artifact kinds are a handful, so a union costs a constant)."""
    by_name = {s.name: s for s in stages}
    available: dict[str, frozenset[str]] = {}
    for name in topological_order(stages):
        found: set[str] = set()
        for need in by_name[name].needs:
            found |= available[need]
            found.update(by_name[need].outputs)
        available[name] = frozenset(found)
    return available


def input_sources(stages: Sequence[Stage], name: str, external: Sequence[str] = ()) -> dict[str, str]:
    """For each artifact the stage reads: the nearest ancestor producing it, or EXTERNAL when it comes from the spec."""
    by_name = {s.name: s for s in stages}
    sources: dict[str, str] = {}
    model = getattr(by_name[name], "model", None)
    chosen = model.from_ if model is not None else None
    if chosen is not None:
        sources["model"] = chosen  # the stage's `model.from` (graph_problems checked it is an ancestor)
    for ancestor in ancestors(stages, name):
        for artifact in by_name[ancestor].outputs:
            sources.setdefault(artifact, ancestor)
    for artifact in external:
        sources.setdefault(artifact, EXTERNAL)
    return {a: sources[a] for a in by_name[name].inputs if a in sources}
