"""Reading checkpoint files without running code from them.

A checkpoint comes from the artifact store, which other people's jobs and pods may write to. Python's pickle runs
whatever a file tells it to, so nothing here unpickles freely:
- DCP's `.metadata` index is a pickle of a few plain dataclasses; `SafeFileSystemReader` reads it with an unpickler
  that can only build those classes (and torch sizes, dtypes, layouts, paths), refusing any other global.
- DCP's non-tensor items (optimizer hyper-parameters such as `lr` and `betas`) go through
  `torch.load(weights_only=True)` in `SafeLoadPlanner` instead of DCP's default `weights_only=False`.
- The RNG state is JSON (`rng_to_json` / `rng_from_json`), not a pickled tuple.
- A DeepSpeed engine reads its own files with `torch.load(weights_only=False)`; `deepspeed_loads_weights_only`
  switches its checkpoint engine to `weights_only=True`, allowing the few DeepSpeed records its files hold.
"""

from __future__ import annotations

import base64
import io
import pathlib
import pickle
import random
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint.filesystem as dcp_filesystem
import torch.distributed.checkpoint.metadata as dcp_metadata
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

_ALLOWED = {
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"): dcp_filesystem._StorageInfo,
    ("pathlib", "PosixPath"): pathlib.PosixPath,
    ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == dcp_metadata.__name__ and not name.startswith("__"):
            value = getattr(dcp_metadata, name, None)
            if isinstance(value, type):
                return value
        raise pickle.UnpicklingError(
            f"checkpoint index (.metadata) refers to {module}.{name}, which a DCP index never holds; "
            "refusing to load it (the file was altered)"
        )


class SafeFileSystemReader(FileSystemReader):
    """DCP's file reader, except that the `.metadata` pickle can only build DCP's own metadata records."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as f:
            metadata = _MetadataUnpickler(f).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"{path} holds a {type(metadata).__name__}, not a DCP index")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that non-tensor items are read with `weights_only=True`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def deepspeed_loads_weights_only(engine) -> None:
    """Make a DeepSpeed engine's `load_checkpoint` read files with `weights_only=True`. Besides tensors and plain
    values, ZeRO's optimizer files hold a loss scaler, the ZeRO stage enum and fragment addresses: only those
    classes may be built, and only through `__new__` and their saved fields (no code of the file's choosing)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    allowed = [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]

    def load(path: str, map_location=None):
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    engine.checkpoint_engine.load = load


def rng_to_json(device: torch.device) -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) generator states as plain JSON values."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(words), "gauss": gauss},
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "torch": _b64(torch.get_rng_state()),
    }
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def rng_from_json(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_to_json` saved, so sampling continues exactly where the checkpointed run was."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(_tensor(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_tensor(state["cuda"]), device)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)
