"""Downloads into a cache that never holds a partial copy, and does not fill up with the remains of killed ones.

A download goes into a hidden folder beside its destination and is renamed into place only when the caller's block
completes (after its own checks). While it runs, the downloader holds an `flock` on a sibling `.lock` file; a
process killed mid-download leaves its folder and lock file, and the next download into the same cache folder
deletes every such folder whose lock it can take (its owner is gone; the kernel dropped the lock with it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".download-"
# a lock file younger than this is left alone: its owner may not have locked it yet
ABANDONED_AFTER_S = 60.0


@contextlib.contextmanager
def staged_download(dest: Path) -> Iterator[Path]:
    """Yield an empty folder to download into; when the block exits without error it becomes `dest`. If another
    process completed `dest` first, its copy is kept (each was checked by its own downloader)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(dest.parent)
    fd, lock = tempfile.mkstemp(dir=dest.parent, prefix=PREFIX, suffix=".lock")
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp = Path(lock.removesuffix(".lock"))
    try:
        tmp.mkdir()
        yield tmp
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        Path(lock).unlink(missing_ok=True)
        os.close(fd)


def remove_abandoned(folder: Path) -> list[Path]:
    """Delete the download folders in `folder` whose downloader is gone; return them."""
    removed = []
    for lock in folder.glob(f"{PREFIX}*.lock"):
        try:
            if time.time() - lock.stat().st_mtime < ABANDONED_AFTER_S:
                continue
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live download
            os.close(fd)
            continue
        partial = Path(str(lock).removesuffix(".lock"))
        shutil.rmtree(partial, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)
        removed.append(partial)
    return removed
