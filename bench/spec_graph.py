"""Stage-graph validation cost: our checks (llm_platform/api/dag.py) against networkx and against the checks this
repository had before issue 10, on the same graphs, in one run.

    python bench/spec_graph.py                      # chains and fan-in graphs of 1,000 to 20,000 stages
    python bench/spec_graph.py --sizes 500 2000     # other sizes
    python bench/spec_graph.py --before REV         # the "before" checks from git revision REV (default b50d15f)

What is timed: duplicate/unknown-name checks, the cycle search, the artifact availability check of every stage and
the topological order (`graph_problems` + `topological_order`). networkx does the equivalent structural work
(DiGraph build, `find_cycle`, `topological_generations`) without the artifact check. The "before" checks are read
from git and skipped past 2,000 stages (they were cubic: minutes). Specs themselves stop at MAX_STAGES = 100 stages;
these sizes show the checks cannot be what makes a hostile spec slow. Wall clock, best of 3, one process.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_platform.api import dag  # noqa: E402


class Stage:
    def __init__(self, name: str, kind: str, needs: list[str]):
        self.name, self.kind, self.needs = name, kind, needs

    @property
    def inputs(self):
        return () if self.kind == "data" else ("corpus",)

    @property
    def outputs(self):
        return ("corpus",) if self.kind == "data" else ("tokenizer", "tokens")


def graph(n: int, fan_in: int) -> list[Stage]:
    return [Stage(f"s{i}", "data" if i == 0 else "tokenizer", [f"s{j}" for j in range(max(0, i - fan_in), i)])
            for i in range(n)]  # fmt: skip


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def networkx_checks(stages: list[Stage]) -> None:
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(s.name for s in stages)
    g.add_edges_from((need, s.name) for s in stages for need in s.needs)
    with contextlib.suppress(nx.NetworkXNoCycle):
        nx.find_cycle(g)
    list(nx.topological_generations(g))


def before_module(rev: str) -> types.ModuleType | None:
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:llm_platform/api/dag.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    module = types.ModuleType("dag_before")
    module.__package__ = "llm_platform.api"
    exec(compile(source, f"{rev}:dag.py", "exec"), module.__dict__)  # noqa: S102 - our own code at an older revision
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 20000])
    parser.add_argument("--before", default="b50d15f")
    args = parser.parse_args()
    before = before_module(args.before)
    columns = ("graph", "stages", "ours ms", "networkx ms", "ours/nx", "before ms", "before/ours")
    widths = (14, 7, 9, 12, 8, 10, 12)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for fan_in, label in ((1, "chain"), (3, "fan-in 3")):
        for n in args.sizes:
            stages = graph(n, fan_in)
            ours = best(lambda s=stages: (dag.graph_problems(s), dag.topological_order(s)))
            nx_time = best(lambda s=stages: networkx_checks(s))
            old = "-"
            ratio = "-"
            if before is not None and n <= 2000:
                sys.setrecursionlimit(max(10_000, 4 * n))
                took = best(lambda s=stages: (before.graph_problems(s), before.topological_order(s)), repeat=1)
                old, ratio = f"{took * 1e3:.0f}", f"{took / ours:.0f}x"
            row = (label, n, f"{ours * 1e3:.1f}", f"{nx_time * 1e3:.1f}", f"{ours / nx_time:.2f}", old, ratio)
            print(" ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
