"""Running `llmp` and the bench scripts as their users do, for tests that need the real entry point."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def llmp(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """`llmp ARGS` in a fresh interpreter (as a user or a pod runs it), its output captured as text."""
    command = [sys.executable, "-m", "llm_platform.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def bench_module(script: str) -> ModuleType:
    """`bench/SCRIPT.py` imported as a module (the scripts are not a package), for tests of their parts."""
    spec = importlib.util.spec_from_file_location(f"{script}_bench", BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
