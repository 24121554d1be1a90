"""What a run needs from the machine it runs on, from outside the run, and from what is already committed, checked
before any stage starts: S3 credentials for the artifact store and for what is read from S3, a file, folder or object
for every path a stage about to run reads (source globs, tuning datasets, eval data and requests, filter and reward
models: every `ReadPath` field), the model `spec.model.from` names (`model_from`), a free port for a built-in serve
stage, and a validation split that is not empty.

All but the split stop a run (`preflight.check` reports them with every other problem). The split is drawn by document
hash, so only the data stage knows it for sure: before it has run, an estimate is a warning (`llmp validate` and
`llmp run` print it); once it is committed and reused, the counts it recorded decide, and an eval stage measuring
perplexity on an empty split stops the run before its first stage (the eval stage itself refuses it too, in one line
before it loads the model).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from llm_platform.api import LLMJob, Problem
from llm_platform.api.dag import EXTERNAL, input_sources
from llm_platform.api.errors import Loc
from llm_platform.api.policy import path_fields
from llm_platform.storage import ArtifactStore, StoreError, make_s3_client
from llm_platform.trainer.data.builtin import PREFIX as BUILTIN_PREFIX
from llm_platform.trainer.data.sources import GLOB_CHARS, ScanLimit, SourceUnreadable, iter_matches, stdlib_paths

from .model_from import model_uri_problem

SERVE_HOST_ENV = "LLMP_SERVE_HOST"  # where a built-in serve stage listens (127.0.0.1 unless set)
S3_SCAN_LIMIT = 10_000
"""S3 keys under a source pattern's literal prefix looked at for a first match (ten LIST requests at most)."""
S3_PATIENCE = {"connect_timeout": 5, "read_timeout": 10, "retries": {"total_max_attempts": 2}}
"""How long preflight waits on an S3 endpoint: a hung one is a problem in seconds, not botocore's minutes."""
GLOB_SOURCES = ("files", "jsonl", "parquet")
"""Source types whose `path` is a glob of files; a Hugging Face dataset's is a name or a folder for `datasets`."""
COUNTED_BYTES = 64 * 2**20
"""JSON-lines sources up to this size are counted line by line for the split estimate; larger ones are surely enough."""


def input_problems(job: LLMJob, names: Iterable[str], storage_uri: str | None) -> list[Problem]:
    """Problems with what the named stages read and write here: credentials, paths and globs that give nothing, the
    model they start from, a serve port that is taken."""
    names = set(names)
    problems: list[Problem] = []
    s3_uses = list(_s3_uses(job, names, storage_uri))
    s3_credentials = not s3_uses or s3_credentials_found()
    if not s3_credentials:
        loc, uri = s3_uses[0]  # one cause, named once: where S3 is first needed
        problems.append(
            Problem(
                loc,
                f"{uri} is on S3, and no S3 credentials were found",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or keep artifacts on this "
                "machine with --storage DIR",
            )
        )
    for loc, path, glob_field in external_reads(job, names):
        if s3_credentials or not path.startswith("s3://"):
            problem = path_problem(path, glob_field)
            if problem is not None:
                problems.append(Problem(loc, problem[0], hint=problem[1]))
    uri = external_model(job, names)
    if uri is not None and (s3_credentials or not uri.startswith("s3://")):
        problem = model_uri_problem(uri, _impatient_s3_client() if uri.startswith("s3://") else None)
        if problem is not None:
            problems.append(Problem(("spec", "model", "from"), problem[0], hint=problem[1]))
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


def path_problem(path: str, glob_field: bool = True) -> tuple[str, str] | None:
    """(what is wrong, what to do) when a path or glob that a stage reads gives it nothing, or None.

    Asks the data stage's own `iter_matches`, so both agree on what matches, and stops at the first match: on S3 one
    LIST request when the first page holds a match, and never more than `S3_SCAN_LIMIT` keys (past them the answer
    is left to the stage, which lists them all). A `glob_field` (a corpus source, a tuning dataset) is matched as its
    reader matches it, key by key; any other path may also name a folder, which on S3 is a prefix of keys."""
    on_s3 = path.startswith("s3://")
    client = _impatient_s3_client() if on_s3 else None
    folder = not glob_field and not GLOB_CHARS.search(path)
    base = path.rstrip("/").removeprefix("file://") if folder else path  # as `fetch_uri` reads a folder
    try:
        if folder and on_s3:  # the object itself, or a key below it: one listing of the literal prefix
            matches = iter_matches(f"{base}*", scan_limit=S3_SCAN_LIMIT, client=client)
            found = next((m for m in matches if m == base or m.startswith(f"{base}/")), None)
        else:
            found = next(iter_matches(base, scan_limit=S3_SCAN_LIMIT, client=client), None)
    except ScanLimit:
        return None
    except SourceUnreadable as error:
        return error.message, error.hint
    except PermissionError as error:  # a match that resolves outside the folders this machine lets jobs read
        return str(error), "keep the glob inside those folders, or ask for the folder to be allowed"
    if found is not None:
        return None
    bucket = path[5:].partition("/")[0]
    if folder:
        relative = not on_s3 and not Path(base).expanduser().is_absolute()
        where = f" in bucket '{bucket}'" if on_s3 else f" (read from {Path.cwd()})" if relative else ""
        return f"'{path}' does not exist{where}", "fix the path, or create or upload it first"
    if on_s3:
        return (
            f"'{path}' matches no object in bucket '{bucket}'",
            "fix the prefix or the pattern (`*` also matches '/' in a key), or upload the files first",
        )
    return (
        f"'{path}' matches no file (read from {Path.cwd()})",
        "fix the path or glob; a relative path is read from the folder llmp runs in",
    )


def external_reads(job: LLMJob, names: Iterable[str]) -> Iterator[tuple[Loc, str, bool]]:
    """(field path, value, whether it is a glob) of every file, folder or glob the named stages read from outside
    the run: each field typed `ReadPath` (found through its `PathRole`, as the site policy finds them), and the model
    folder of a synthetic stage's `engine:<folder>` endpoints. Left out: built-in datasets (`builtin:<name>`, whose
    names `preflight.setting_problems` checks) and sources that are not file globs (the standard library, Hugging
    Face datasets). What one stage hands the next is never a path here: it goes through the store, named by the DAG."""
    for i, stage in enumerate(job.spec.stages):
        if stage.name not in names:
            continue
        for loc, mode, value in path_fields(stage):
            if mode != "read" or value.startswith(BUILTIN_PREFIX):
                continue
            if "sources" in loc and _at(stage, loc[:-1]).type not in GLOB_SOURCES:
                continue
            yield ("spec", "stages", i, *loc), value, loc[-1] == "path"  # Source.path and DatasetRef.path are globs
        synthetic = stage.data.synthetic if stage.data is not None else None
        for name in ("endpoint", "judge_endpoint") if synthetic is not None else ():
            endpoint = getattr(synthetic, name) or ""
            if endpoint.startswith("engine:"):  # the built-in engine over a local model folder
                yield ("spec", "stages", i, "data", "synthetic", name), endpoint.removeprefix("engine:"), False


def _at(model, loc: Loc):
    for key in loc:
        model = model[key] if isinstance(key, int) else getattr(model, key)
    return model


def external_model(job: LLMJob, names: Iterable[str]) -> str | None:
    """`spec.model.from` when a stage about to run starts from it (no earlier stage of the job gives it a model)."""
    uri = job.spec.model.from_ if job.spec.model is not None else None
    stages = job.spec.stages
    if uri and any(input_sources(stages, n, ["model"]).get("model") == EXTERNAL for n in set(names)):
        return str(uri)
    return None


def _impatient_s3_client():
    from botocore.config import Config

    return make_s3_client(config=Config(**S3_PATIENCE))


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
    for loc, path, _ in external_reads(job, names):
        if path.startswith("s3://"):
            yield loc, path


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
        count = len(stdlib_paths(source.include))
    elif source.type in ("files", "jsonl") and not str(source.path).startswith("s3://"):
        try:  # matched as the data stage matches it, inside the folders this machine lets jobs read
            files = [Path(p) for p in iter_matches(str(source.path))]
        except PermissionError:  # its own problem (input_problems), not a split to warn about
            return None
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


def committed_split_problems(job: LLMJob, names: Iterable[str], store: ArtifactStore) -> list[Problem]:
    """Eval stages about to run whose perplexity split is already known to be empty: the tokenizer stage they read is
    committed and reused with 0 val tokens, or it runs again from a reused data stage that committed 0 val documents.

    Read from the counts the manifests record (`val_tokens`, `val_docs`), nothing re-tokenized. The eval stage
    refuses such a split too, but only when it starts, after every training stage before it; here the run stops
    before its first stage, naming the data stage's `val_fraction`, which decides the split."""
    names = set(names)
    stages = job.spec.stages
    index = {stage.name: i for i, stage in enumerate(stages)}
    readers: dict[str, list[str]] = {}  # the data stage whose split is empty -> the eval stages measuring on it
    held: dict[str, str] = {}  # the data stage -> what its committed artifacts say
    for stage in stages:
        if stage.name not in names or stage.eval is None or "perplexity" not in stage.eval.metrics:
            continue
        tokens = input_sources(stages, stage.name).get("tokens")
        corpus = input_sources(stages, tokens).get("corpus") if tokens is not None else None
        if corpus is None:
            continue
        if tokens not in names and _recorded(store, tokens, "val_tokens") == 0:
            held[corpus] = f"stage '{tokens}' committed 0 val tokens"
        elif tokens in names and corpus not in names and _recorded(store, corpus, "val_docs") == 0:
            held[corpus] = f"stage '{corpus}' committed 0 val documents, which stage '{tokens}' tokenizes"
        else:
            continue
        readers.setdefault(corpus, []).append(stage.name)
    problems = []
    for corpus, evals in readers.items():
        fraction = stages[index[corpus]].data.val_fraction
        metrics = " and ".join(f"spec.stages[{index[name]}].eval.metrics" for name in evals)
        problems.append(
            Problem(
                ("spec", "stages", index[corpus], "data", "val_fraction"),
                f"the validation split is empty ({held[corpus]} at val_fraction {fraction:g}), and "
                f"{', '.join(evals)} {'measures' if len(evals) == 1 else 'measure'} perplexity on it",
                hint=f"raise val_fraction (stage '{corpus}' then runs again), or add documents and run with --from "
                f"{corpus}; or drop perplexity from {metrics}",
            )
        )
    return problems


def _recorded(store: ArtifactStore, stage: str, metric: str) -> int | None:
    """A count the committed stage recorded in its manifest, or None when it is not committed or did not record it."""
    try:
        manifest = store.manifest(stage)
    except StoreError:  # an unreadable manifest: the stage is not up to date and runs again
        return None
    value = None if manifest is None else manifest.meta.get("metrics", {}).get(metric)
    return value if isinstance(value, int) else None
