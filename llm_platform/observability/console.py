"""Where human-readable output goes: wrapped to the terminal's width on a terminal, never wrapped in a log or a pipe.

rich wraps at 80 columns whenever it cannot ask a terminal for its width, so a run piped to a file (`llmp run job.yaml
| tee run.log`, a pod's log) would have its paths and messages broken mid-word. Every console of the CLI and of the
stage runners comes from here.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

LOG_WIDTH = 160
"""Columns of output that goes to a file or a pipe (tables and rules); text lines are never wrapped there."""


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): the terminal's width on a terminal; unwrapped lines in a log or a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else LOG_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)
