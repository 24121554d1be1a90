"""What the local jobs API's status read costs in a run's log: `LogSummaries` (a summary kept between reads, brought
up to date with what the run appended) against what every status GET did before (the baseline: read the last 16 MiB,
split it into each stage's lines, find the failure; `run_log.py` as it was at 9910853, read from git), on a log of
a few stages with many progress lines.

    PYTHONPATH=. python bench/status_log.py --mb 16
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from llm_platform.services.local_logs import read_from
from llm_platform.services.log_summaries import LogSummaries

BEFORE = "9910853"  # the commit before the status read kept a summary


def old_run_log() -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:llm_platform/services/run_log.py"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("run_log_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "run_log_before.py", "exec"), module.__dict__)  # noqa: S102  # this repository's own code
    return module


def write_log(path: Path, mb: int) -> list[str]:
    stages = ["data", "tokenizer", "pretrain", "eval"]
    lines = ["─" * 40]
    per_stage = mb * (1 << 20) // len(stages) // 80
    for name in stages:
        lines.append(f"▶  {name} ({name})")
        lines += [
            f"step {i}/{per_stage} loss 3.{i % 10000:04d} lr 3.00e-04 tok/s 123456 {i} s" for i in range(per_stage)
        ]
        lines.append(f"✓  {name} in 12.3s")
    path.write_text("\n".join(lines) + "\n")
    return stages


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=16, help="size of the run's log")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    before = old_run_log()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.log"
        stages = write_log(path, args.mb)

        def old() -> None:
            log = read_from(path, 0)[0].decode(errors="replace")
            before.stage_logs(log)
            before.failure_message(log)

        def cold() -> None:
            LogSummaries().status("job", path, stages)

        warm = LogSummaries()
        warm.status("job", path, stages)

        def grown() -> None:
            with path.open("a") as f:
                f.write("step 1/2 loss 1.0\n" * 10)
            warm.status("job", path, stages)

        old_s = best_of(args.repeat, old)
        rows = [
            ("before: every GET reads and splits the log", old_s),
            ("now, first read of the log", best_of(args.repeat, cold)),
            ("now, log unchanged since the last read", best_of(args.repeat, lambda: warm.status("job", path, stages))),
            ("now, 10 lines appended since the last read", best_of(args.repeat, grown)),
        ]
    print(f"run.log of {args.mb} MiB, {len(stages)} stages")
    print("| status read of run.log | ms | before / this |")
    print("|---|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {seconds * 1e3:,.2f} | {old_s / seconds:,.1f}x |")


if __name__ == "__main__":
    main()
