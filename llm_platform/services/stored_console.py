"""A stage's console as its `StageReporter` mirrored it into the store (`<stage>/live/console.1.log`, then
`console.log`; see `trainer.stages.console_log`), read back for the jobs API's logs route once the stage's pods, and
the kubelet's copy of their logs, are gone.

What is there is what rank 0 printed, as of the mirror's last copy (every LLMP_PROGRESS_EVERY_S, 10 s by default, and
once at the end): the console of a stage that ended is complete, that of a pod that vanished lacks at most its last
interval. The files are written by the job's own pods, so they are read as untrusted: at most `max_bytes`, newest
first, by ranged reads that cost the same whatever the objects' size.
"""

from __future__ import annotations

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.console_log import CONSOLE_FILE, MAX_BYTES, PREVIOUS_FILE
from llm_platform.trainer.stages.progress import live_key

STORE_LOG_MAX_BYTES = MAX_BYTES  # what a stage keeps of its console: both files, whole


def stored_console(store: ArtifactStore, stage: str, max_bytes: int = STORE_LOG_MAX_BYTES) -> tuple[bytes, bool] | None:
    """(the end of the stage's console, whether older output was left out): the last `max_bytes` of console.1.log
    and console.log together; None if the store holds neither (the stage never started here, or it was cleaned)."""
    key = live_key(stage)
    current = store.backend.get_tail(f"{key}/{CONSOLE_FILE}", max_bytes)
    data, cut = (current[0], len(current[0]) < current[1]) if current else (b"", False)
    previous = None
    if len(data) < max_bytes and not cut:
        previous = store.backend.get_tail(f"{key}/{PREVIOUS_FILE}", max_bytes - len(data))
        if previous is not None:
            data, cut = previous[0] + data, len(previous[0]) < previous[1]
    if current is None and previous is None:
        return None
    return data, cut


def console_lines(data: bytes, cut: bool, tail: int | None = None) -> list[str]:
    """The console's lines, each ending in a newline: without the first if `cut` began the data mid-line, only the
    last `tail` if given. Bytes that are not UTF-8 are replaced, not refused. Pure."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ended the last line
    if cut and lines:
        lines.pop(0)
    if tail is not None:
        lines = lines[-tail:] if tail else []
    return [line.decode(errors="replace") + "\n" for line in lines]
