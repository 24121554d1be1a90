"""Sharded checkpoints in the artifact store, resumable at any world size.

A checkpoint of step N is the backend's files of model and optimizer (`backend.CheckpointState`: a torch distributed
checkpoint, every rank writing its own shards with a `.metadata` index that lets any number of ranks read it back;
under DeepSpeed, the engine's own files) plus `train_state.json` (step,
data-loader position, loss scaler, running summary) and one `rng_rank<r>.json` per rank. Nothing in it is
unpickled freely on resume (see checkpoint_io.py).

Publishing it, crash-safe at every point:
1. every rank writes its files into a staging folder shared by the ranks of its node, then drops a marker file;
2. the first rank of each node, once all its node's markers are there, commits the folder as the store key
   `<key>/step_<N>/node_<k>` (an atomic commit);
3. rank 0, once every node's key exists, writes the `<key>/latest` pointer, last, then deletes all but the
   newest `keep` checkpoints.
A run killed anywhere before step 3 leaves `latest` on the previous complete checkpoint. With `async_save`, steps
1-3 run in a background thread while training goes on (DCP's async save, over its own gloo group).

Resuming verifies every file against the sizes and sha256 its node's manifest records. A checkpoint that fails (a
flipped byte, a lost file) is skipped with a warning naming it and the file, and the previous complete one is used:
keeping `keep` >= 2 checkpoints is what makes that fallback possible.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from llm_platform.storage import ArtifactStore, StoreError

from .backend import CheckpointState
from .checkpoint_io import rng_from_json, rng_to_json
from .distributed import DistEnv, barrier

TRAIN_STATE = "train_state.json"
PUBLISH_TIMEOUT_S = 3600.0
# steps and node counts read back from the store are bounded: a pointer is a file, and files may be altered
MAX_STEP, MAX_NODES = 10**12, 65536
_STEP = re.compile(r"/step_(\d+)/node_\d+$")

log = logging.getLogger(__name__)

# DCP warns on every save without a process group, including the background thread's; one process is intended.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


class Checkpointer:
    def __init__(
        self,
        store: ArtifactStore,
        key: str,
        env: DistEnv,
        staging: Path,
        keep: int = 2,
        async_save: bool = False,
    ) -> None:
        self.store = store
        self.key = key.rstrip("/")
        self.env = env
        self.staging = staging
        self.keep = keep
        self.async_save = async_save
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._async_group = None

    # ------------------------------------------------------------------------------------------------ reading
    def latest(self) -> dict[str, Any] | None:
        """The pointer to the newest complete checkpoint: {"step", "nodes"}; None if there is none."""
        return self.store.read_json(f"{self.key}/latest")

    def restore(self, state: CheckpointState) -> dict[str, Any] | None:
        """Load the newest good checkpoint into `state` (a backend's model and optimizer, in place; DCP reshards to
        this world size, DeepSpeed's own files need the same one) and this rank's RNG; returns the saved train
        state, or None when there is no checkpoint.

        A checkpoint whose files do not match their manifests is skipped (logged) for the previous complete one;
        every rank takes the same decision. Raises `StoreError` if checkpoints exist but none is usable."""
        skipped: list[str] = []
        for step, nodes in self._candidates():
            folder, problem = self._verified_copy(step, nodes)
            if folder is None:
                log.warning("checkpoint step %d of %s is unusable, trying an older one: %s", step, self.key, problem)
                skipped.append(f"step {step}: {problem}")
                continue
            if skipped:
                log.warning("resuming %s from step %d (skipped: %s)", self.key, step, "; ".join(skipped))
            return self._load(folder, state)
        if skipped:
            raise StoreError(
                f"no usable checkpoint under {self.key}: " + "; ".join(skipped) + ". Delete the checkpoints to "
                "train from scratch, or restore the files."
            )
        return None

    def _candidates(self) -> list[tuple[int, int]]:
        """(step, nodes) of the checkpoints to try, newest first: the one `latest` names, then older complete ones.
        Newer steps than `latest` are publishes that never finished, never candidates. An unreadable pointer (it is
        a file in the store, like any other) makes every complete checkpoint a candidate."""
        try:
            pointer = self.latest()
            if pointer is not None and not (
                isinstance(pointer, dict)
                and _is_count(pointer.get("step"), MAX_STEP)
                and _is_count(pointer.get("nodes"), MAX_NODES)
            ):
                raise ValueError(f"expected {{'step': N, 'nodes': N}}, got {str(pointer)[:100]}")
        except ValueError as e:
            log.warning("the latest pointer of %s is unreadable (%s); trying every complete checkpoint", self.key, e)
            pointer = {"step": None, "nodes": None}
        if pointer is None:
            return []
        found: dict[int, set[int]] = {}
        for key in self.store.keys(self.key):
            match = _STEP.search(key)
            if match:
                found.setdefault(int(match.group(1)), set()).add(int(key.rsplit("_", 1)[1]))
        older = [
            (step, len(nodes))
            for step, nodes in sorted(found.items(), reverse=True)
            if (pointer["step"] is None or step < pointer["step"])
            and nodes == set(range(self._nodes_of(step, len(nodes))))
        ]
        newest = [(pointer["step"], pointer["nodes"])] if pointer["step"] is not None else []
        return [*newest, *older]

    def _nodes_of(self, step: int, found: int) -> int:
        """How many nodes wrote checkpoint `step` (recorded in node 0's manifest; else as many as are committed)."""
        try:
            manifest = self.store.manifest(f"{_step_key(self.key, step)}/node_0")
            nodes = manifest.meta.get("nodes", found) if manifest else found
        except StoreError:  # an unreadable manifest: its fetch will say so and the step will be skipped
            return found
        return nodes if _is_count(nodes, MAX_NODES) else found

    def _verified_copy(self, step: int, nodes: int) -> tuple[Path | None, str]:
        """One local folder holding every node's files of the checkpoint (what DCP's reader needs), each file
        verified against its manifest; (None, why) if any rank found a file missing or altered."""
        node_keys = [f"{_step_key(self.key, step)}/node_{k}" for k in range(nodes)]
        folders: list[Path] = []
        problem = ""

        def fetch() -> None:
            nonlocal folders, problem
            try:
                folders = [self.store.fetch(k) for k in node_keys]
            except StoreError as e:
                problem = str(e)

        # The first rank of a node downloads into the store's cache; the others then find it there.
        if self.env.local_rank == 0:
            fetch()
        barrier(self.env)
        if self.env.local_rank != 0:
            fetch()
        if not _all_ranks(not problem, self.env):
            return None, problem or "another rank found it corrupt"
        if len(folders) == 1:
            return folders[0], ""
        merged = self.staging / f"restore_{step:08d}_rank{self.env.rank}"
        merged.mkdir(parents=True, exist_ok=True)
        for folder in folders:
            for file in folder.iterdir():
                link = merged / file.name
                if not link.exists():
                    link.symlink_to(file)
        return merged, ""

    def _load(self, folder: Path, state: CheckpointState) -> dict[str, Any]:
        state.load(folder)
        rng_file = folder / f"rng_rank{self.env.rank}.json"
        if rng_file.exists():
            rng_from_json(json.loads(rng_file.read_text()), self.env.device)
        elif (folder / f"rng_rank{self.env.rank}.pt").exists():
            log.warning("%s holds a pickled RNG state (older format); not unpickling it: sampling will differ", folder)
        return json.loads((folder / TRAIN_STATE).read_text())

    # ------------------------------------------------------------------------------------------------ writing
    def save(self, step: int, state: CheckpointState, train_state: dict) -> None:
        """Checkpoint step `step` (every rank calls it): `state`'s files, this rank's RNG and the loop's
        `train_state`. Returns once the state is safe from further training: at once with `async_save` when `state`
        can write in the background (the write and upload continue there), else when published."""
        self.wait()
        folder = self.staging / f"step_{step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rng_rank{self.env.rank}.json").write_text(json.dumps(rng_to_json(self.env.device)))
        if self.env.is_main:
            (folder / TRAIN_STATE).write_text(json.dumps(train_state, indent=2))
        if self.async_save and self.env.world_size > 1 and self._async_group is None:
            self._async_group = dist.new_group(backend="gloo")
        future = state.save(folder, asynchronous=self.async_save, group=self._async_group)
        if future is None:
            self._publish(step, folder)
            return
        self._thread = threading.Thread(target=self._finish_async, args=(future, step, folder), daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until a background save is published; re-raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("saving a checkpoint in the background failed") from error

    def _finish_async(self, future, step: int, folder: Path) -> None:
        try:
            future.result()
            self._publish(step, folder)
        except BaseException as e:  # reported by wait(), on the training thread
            self._error = e

    def _publish(self, step: int, folder: Path) -> None:
        env = self.env
        markers = self.staging / "markers" / f"step_{step:08d}"
        markers.mkdir(parents=True, exist_ok=True)
        (markers / f"rank_{env.rank}").touch()
        step_key = _step_key(self.key, step)
        if env.local_rank == 0:
            local_ranks = range(env.node * env.local_world_size, (env.node + 1) * env.local_world_size)
            _wait_for(lambda: all((markers / f"rank_{r}").exists() for r in local_ranks), "the node's ranks")
            self.store.commit(
                f"{step_key}/node_{env.node}", folder, {"step": step, "node": env.node, "nodes": env.nodes}
            )
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(markers, ignore_errors=True)
        if env.is_main:
            node_keys = [f"{step_key}/node_{k}" for k in range(env.nodes)]
            _wait_for(lambda: all(self.store.exists(k) for k in node_keys), "every node's upload")
            self.store.write_json(f"{self.key}/latest", {"step": step, "nodes": env.nodes})
            self._prune()

    def _prune(self) -> None:
        by_step: dict[int, list[str]] = {}
        for key in self.store.keys(self.key):
            match = _STEP.search(key)
            if match:
                by_step.setdefault(int(match.group(1)), []).append(key)
        for step in sorted(by_step)[: -self.keep]:
            for key in by_step[step]:
                self.store.delete(key)


def _step_key(key: str, step: int) -> str:
    return f"{key}/step_{step:08d}"


def _wait_for(condition, what: str, timeout: float = PUBLISH_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"checkpoint: gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _is_count(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _all_ranks(ok: bool, env: DistEnv) -> bool:
    """Whether `ok` holds on every rank (a MIN all-reduce), so all ranks take the same checkpoint."""
    if env.world_size == 1 or not dist.is_initialized():
        return ok
    flag = torch.tensor([int(ok)], device=env.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
