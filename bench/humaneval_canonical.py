"""All 164 HumanEval canonical solutions through the code sandbox: how many pass (all should) and how long it takes.

python bench/humaneval_canonical.py ../shared/data [--workers 8]
"""

from __future__ import annotations

import argparse
import time

from llm_platform.trainer.eval.benchmark_files import HUMANEVAL_FILE, benchmark_file, read_humaneval
from llm_platform.trainer.eval.sandbox import humaneval_program, isolation, run_programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    problems = read_humaneval(benchmark_file(args.data_dir, HUMANEVAL_FILE))
    started = time.monotonic()
    outcomes = run_programs([humaneval_program(p, p["canonical_solution"]) for p in problems], workers=args.workers)
    seconds = time.monotonic() - started
    passed = sum(outcome.passed for outcome in outcomes)
    print(f"isolation={isolation()} workers={args.workers}: {passed}/{len(problems)} passed in {seconds:.1f} s")
    for problem, outcome in zip(problems, outcomes, strict=True):
        if not outcome.passed:
            print(f"  {problem['task_id']}: {outcome.status} {outcome.stderr[-200:]!r}")


if __name__ == "__main__":
    main()
