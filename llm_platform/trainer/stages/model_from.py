"""What `spec.model.from` names, checked before any stage starts: a stage that tunes, evaluates or serves a model
from outside the job would otherwise find it missing only when it starts, after every stage before it has run.

`fetch_uri` (context.py) reads the URI in one of two ways, and this asks the same questions without downloading:
a committed stage of another job (`<storage>/<stage>`: its manifest must list `model/config.json`), or a Hugging
Face-format folder, local or on S3 (`config.json` and safetensors weights). Listing goes through the data stage's
matcher (`iter_matches`), so an unreadable bucket or a hung endpoint reads as it does for a source glob: at most one
LIST for the manifest, one page of keys for the folder, and one GET of the manifest when there is one.
"""

from __future__ import annotations

from llm_platform.storage import ArtifactStore, S3Backend, StoreError
from llm_platform.trainer.data.sources import ScanLimit, SourceUnreadable, iter_matches

WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
"""What `hf.read_safetensors` loads: one file, or the index of a sharded checkpoint."""
FOLDER_SCAN_LIMIT = 1000
"""Keys of a model folder looked at (one S3 LIST page); past them the folder is taken as it is, undecided."""
WHAT_IT_NAMES = "spec.model.from names a committed stage of another job (<storage>/<stage>) or a model folder"


def model_uri_problem(uri: str, client=None) -> tuple[str, str] | None:
    """(what is wrong, what to do) when `uri` gives no model that `fetch_uri` and the loader would accept, or None.

    `client` is the S3 client to ask (preflight's impatient one)."""
    base = uri.removeprefix("file://").rstrip("/")
    try:
        stage = committed_stage(base)
        if stage is not None and next(iter_matches(f"{base}/manifest.json", client=client), None) is not None:
            return _committed_model_problem(*stage, client)
        names: set[str] = set()
        for match in iter_matches(f"{base}/*", scan_limit=FOLDER_SCAN_LIMIT, client=client):
            names.add(match[len(base) + 1 :])
            if "config.json" in names and names.intersection(WEIGHTS):
                return None
    except ScanLimit:
        return None
    except SourceUnreadable as error:
        return error.message, error.hint
    except PermissionError as error:  # outside the folders this machine lets jobs read
        return str(error), "name a model inside those folders, or ask for the folder to be allowed"
    return _folder_problem(uri, names)


def committed_stage(uri: str) -> tuple[str, str] | None:
    """(storage, stage) when `fetch_uri` looks for a committed stage at `uri`: it has a folder above its last part.
    None for a bare name, a top-level folder or a bucket."""
    parent, _, stage = uri.rstrip("/").rpartition("/")
    return (parent, stage) if stage and parent.rstrip("/") not in ("", "file:", "s3:") else None


def _committed_model_problem(parent: str, stage: str, client) -> tuple[str, str] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    if parent.startswith("s3://"):
        bucket, _, prefix = parent[5:].partition("/")
        store = ArtifactStore(S3Backend(bucket, prefix, client=client), parent)
    else:
        store = ArtifactStore.open(parent)
    try:
        manifest = store.manifest(stage)
    except StoreError as error:
        return str(error), "run that job's stage again, so it commits a readable manifest"
    except (OSError, BotoCoreError, ClientError) as error:  # the listing a moment ago worked, the read did not
        return (
            f"cannot read {parent}/{stage}/manifest.json ({error})",
            "check the S3 endpoint and credentials, and try again",
        )
    if manifest is not None and "model/config.json" not in manifest.files:
        return (
            f"stage '{stage}' in {parent} is committed but holds no model/ folder",
            "name a stage that writes a model (pretrain, finetune or align)",
        )
    return None


def _folder_problem(uri: str, names: set[str]) -> tuple[str, str]:
    if not names:
        where = f"in bucket '{uri[5:].partition('/')[0]}'" if uri.startswith("s3://") else "on this machine"
        return (
            f"nothing at '{uri}' {where}",
            f"fix the path, or run the stage of the job that writes it first ({WHAT_IT_NAMES})",
        )
    if "config.json" not in names:
        return (
            f"'{uri}' is neither a committed stage (no manifest.json) nor a Hugging Face-format model (no config.json)",
            "if it is another job's stage, run that stage until it commits; else name a folder holding config.json "
            "and model.safetensors",
        )
    return (
        f"'{uri}' holds config.json but no {' or '.join(WEIGHTS)} (only safetensors weights load)",
        "save the weights as safetensors (save_pretrained(..., safe_serialization=True))",
    )
