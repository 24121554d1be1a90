"""What a run needs from the machine it runs on, checked before any stage starts: S3 credentials for the artifact store
and for S3 sources, local files for every source glob, a free port for a built-in serve stage, and a validation split
that will not come out empty.

The first three stop a run (`preflight.check` reports them with every other problem); the third is a warning, because
the split is drawn by document hash and only the data stage knows for sure: `llmp validate` and `llmp run` print it,
and the eval stage refuses an empty split in one line before it loads the model.
"""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from llm_platform.api import LLMJob, Problem
from llm_platform.api.errors import Loc
from llm_platform.trainer.data.sources import stdlib_root

SERVE_HOST_ENV = "LLMP_SERVE_HOST"  # where a built-in serve stage listens (127.0.0.1 unless set)
COUNTED_BYTES = 64 * 2**20
"""JSON-lines sources up to this size are counted line by line for the split estimate; larger ones are surely enough."""


def input_problems(job: LLMJob, names: Iterable[str], storage_uri: str | None) -> list[Problem]:
    """Problems with what the named stages read and write here: credentials, and globs that match no file."""
    names = set(names)
    problems: list[Problem] = []
    s3_uses = list(_s3_uses(job, names, storage_uri))
    if s3_uses and not s3_credentials_found():
        loc, uri = s3_uses[0]  # one cause, named once: where S3 is first needed
        problems.append(
            Problem(
                loc,
                f"{uri} is on S3, and no S3 credentials were found",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or keep artifacts on this "
                "machine with --storage DIR",
            )
        )
    for i, stage in enumerate(job.spec.stages):
        if stage.name not in names or stage.data is None:
            continue
        for j, source in enumerate(stage.data.sources):
            local = source.type in ("files", "jsonl", "parquet") and not str(source.path).startswith("s3://")
            if local and not glob.glob(os.path.expanduser(str(source.path)), recursive=True):
                problems.append(
                    Problem(
                        ("spec", "stages", i, "data", "sources", j, "path"),
                        f"'{source.path}' matches no file (read from {Path.cwd()})",
                        hint="fix the path or glob; a relative path is read from the folder llmp runs in",
                    )
                )
    for i, stage in enumerate(job.spec.stages):
        if stage.name in names and stage.serve is not None and stage.serve.engine == "builtin":
            host = os.environ.get(SERVE_HOST_ENV, "127.0.0.1")
            taken = port_taken(host, stage.serve.port)
            if taken is not None:
                problems.append(
                    Problem(
                        ("spec", "stages", i, "serve", "port"),
                        f"{host}:{stage.serve.port} is not free ({taken})",
                        hint="stop what holds it, or set serve.port to a free port",
                    )
                )
    return problems


def port_taken(host: str, port: int) -> str | None:
    """Why `port` cannot be listened on at `host` (another program holds it), or None: checked before the model
    loads, where the server would only say "address already in use" after start-up, naming neither setting nor fix."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is free
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.strerror
    return None


def _s3_uses(job: LLMJob, names: set[str], storage_uri: str | None) -> Iterator[tuple[Loc, str]]:
    if storage_uri and storage_uri.startswith("s3://"):
        yield ("spec", "storage", "uri"), storage_uri
    if job.spec.model is not None and str(job.spec.model.from_ or "").startswith("s3://"):
        yield ("spec", "model", "from"), str(job.spec.model.from_)
    for i, stage in enumerate(job.spec.stages):
        if stage.name in names and stage.data is not None:
            for j, source in enumerate(stage.data.sources):
                if str(source.path or "").startswith("s3://"):
                    yield ("spec", "stages", i, "data", "sources", j, "path"), str(source.path)


def s3_credentials_found() -> bool:
    """Whether boto3 finds credentials the way a stage's client will: the mounted Secret (LLMP_S3_SECRET_DIR), then
    botocore's own chain (environment, profile files, web identity, container and instance metadata)."""
    secret_dir = os.environ.get("LLMP_S3_SECRET_DIR")
    if secret_dir and (Path(secret_dir) / "AWS_ACCESS_KEY_ID").is_file():
        return True
    import boto3

    return boto3.Session().get_credentials() is not None


def expected_docs(source) -> int | None:
    """About how many documents a source yields, counted without reading them; None when that is not cheap to know."""
    if source.type == "stdlib":
        root = stdlib_root()
        count = sum(1 for p in root.rglob(source.include) if "site-packages" not in p.parts and p.is_file())
    elif source.type in ("files", "jsonl") and not str(source.path).startswith("s3://"):
        files = [Path(p) for p in glob.glob(os.path.expanduser(str(source.path)), recursive=True)]
        if not files:  # a glob matching nothing is its own problem (input_problems), not a split to warn about
            return None
        if source.type == "files":
            count = len(files)
        elif sum(p.stat().st_size for p in files if p.is_file()) > COUNTED_BYTES:
            return None
        else:
            count = sum(p.read_bytes().count(b"\n") for p in files if p.is_file())
    else:
        count = None
    if source.max_docs is not None:
        return source.max_docs if count is None else min(count, source.max_docs)
    return count


def split_warnings(job: LLMJob) -> list[Problem]:
    """Data stages whose validation split will most likely be empty (fraction × documents rounds to 0) while a stage
    of the job measures perplexity on it. Reads the file system (globs, the standard library's tree), never S3."""
    perplexity = [s.name for s in job.spec.stages if s.eval is not None and "perplexity" in s.eval.metrics]
    if not perplexity:
        return []
    warnings = []
    for i, stage in enumerate(job.spec.stages):
        if stage.data is None:
            continue
        fraction = stage.data.val_fraction
        counts = [expected_docs(source) for source in stage.data.sources]
        docs = None if None in counts else sum(c for c in counts if c is not None)
        if fraction == 0 or (docs is not None and round(fraction * docs) == 0):
            held = "no documents" if fraction == 0 else f"{fraction:g} of about {docs} documents rounds to none"
            warnings.append(
                Problem(
                    ("spec", "stages", i, "data", "val_fraction"),
                    f"the validation split will be empty ({held}), and {', '.join(perplexity)} measures perplexity "
                    "on it",
                    hint="raise val_fraction or add documents",
                )
            )
    return warnings
