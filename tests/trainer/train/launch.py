"""Run `worker.py` as real processes: alone, or under torchrun with several ranks on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def worker_command(token_file: Path, out: Path, nproc: int = 1, *args: str) -> list[str]:
    worker = ["-m", "tests.trainer.train.worker", "--tokens", str(token_file), "--out", str(out), *args]
    if nproc == 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *worker]


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_worker(token_file: Path, out: Path, nproc: int = 1, *args: str, check: bool = True):
    proc = subprocess.run(
        worker_command(token_file, out, nproc, *args),
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def logged_losses(out: Path) -> dict[int, float]:
    """step -> loss from the worker's JSONL log (a resumed run appends; later lines win)."""
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}
