"""The jobs REST API: `POST /v1/jobs` takes an LLMJob (JSON or YAML) and runs it; GET lists and reads status (each
stage Pending, Running at its step, Succeeded, UpToDate, Failed with its error, or Skipped); `GET .../logs` reads the
job's log (`?stage=NAME`, `?tail=N`; `?follow=true` streams it, chunked, until the job ends).

Two backends behind one interface (`backend.Jobs`): the embedded one runs each job here with `llmp run`; the cluster
one creates the LLMJob object, which the operator runs (`llmp serve-api --backend cluster`, the chart's `api.enabled`).

Every route but `/healthz` needs a bearer token (`tokens`, `auth`), and so do `/docs` and `/openapi.json` unless the
operator makes them public. A token is for one namespace: `/v1/jobs...` acts in the token's namespace, and
`/v1/namespaces/{namespace}/jobs...` names it (403 for any other).

Validation is the same `llm_platform.api` code as `llmp validate` and the admission webhook, so a bad spec gets the same
messages here (a 422 whose body lists every problem with its field path). A valid job that asks for what this server
cannot run is a 422 too, before anything starts. Every error body is `{"error": ..., "problems": [...]}` and says
what to do; a malformed request never gets a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_platform.api import KIND, LLMJob, Metadata, SpecError
from llm_platform.api.policy import SpecPolicy
from llm_platform.api.stage import NAME_PATTERN
from llm_platform.trainer.stages.preflight import PreflightError

from .api_models import ERRORS, LOG_TEXT, SUBMIT_ERRORS, ErrorBody, Health, JobList, JobObject
from .auth import caller_of, check_namespace, writer_of
from .backend import JobExists, JobNotFound, Jobs, LogQuery, LogsUnavailable, QueueFull, StageNotFound
from .job_body import parse_off_loop, read_limited
from .tokens import DNS_LABEL, Token, TokenFile

TITLE = "llm-platform jobs API"
JOB_SCHEMA = "#/components/schemas/LLMJob"
NAME_MAX = next(m.max_length for m in Metadata.model_fields["name"].metadata if hasattr(m, "max_length"))
JobName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX, description="The job's metadata.name (a DNS-1123 label).")
]
Namespace = Annotated[
    str, Path(pattern=DNS_LABEL.pattern, max_length=63, description="The namespace; must be the token's.")
]
PATH_RULES = {
    "name": f"a job name is lowercase letters, digits and '-', starting and ending with a letter or digit, at most "
    f"{NAME_MAX} characters (as metadata.name)",
    "namespace": "a namespace is lowercase letters, digits and '-', starting and ending with a letter or digit, at "
    "most 63 characters",
}
MAX_TAIL = 100_000
REASONS = {
    404: "no such route; the routes are listed in /openapi.json",
    405: "this route does not take that method; the Allow header lists those it takes",
}


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error message that quotes the request (which may hold an unpaired surrogate,
    valid in a JSON string escape but not encodable as UTF-8) still renders."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class ApiSettings:
    max_body_bytes: int = 256 << 10  # an LLMJob is a few KiB; YAML parses at ~10-100 KB/s in pure Python
    public_docs: bool = False  # serve /docs and /openapi.json without a token
    parse_threads: int = 4  # bodies parsed and validated at once
    parse_waiting: int = 16  # bodies waiting for a parse thread; 429 past it
    # `follow=true` log streams open at once, across callers; 429 past it. Each holds a worker thread of the
    # server's pool (which list, get and delete share) for most of its life, so without a bound a read-only token
    # could take them all
    max_follows: int = 16
    # what a caller's spec may reach on this server: by default no local path, credential or storage endpoint at all
    # (the Secrets a job names are the cluster backend's to check, against the operator's allow-list)
    policy: SpecPolicy = field(default_factory=SpecPolicy.strict)


class JobCalls:
    """What the routes do, once each: the `/v1/jobs...` and `/v1/namespaces/{namespace}/jobs...` routes differ only
    in where the namespace comes from."""

    def __init__(self, jobs: Jobs, settings: ApiSettings):
        self.jobs, self.settings = jobs, settings
        self.parse_limiter = anyio.CapacityLimiter(settings.parse_threads)
        self.follows = 0  # open `follow=true` streams; only the event loop's thread counts them

    def in_scope(self, token: Token, namespace: str) -> str:
        check_namespace(token, namespace)
        refusal = self.jobs.serves(namespace)
        if refusal:
            raise HTTPException(403, refusal)
        return namespace

    async def submit(self, request: Request, token: Token, namespace: str) -> JobObject:
        self.in_scope(token, namespace)
        if self.parse_limiter.statistics().tasks_waiting >= self.settings.parse_waiting:
            raise HTTPException(
                429, "too many job specs are being validated now; retry in a few seconds", {"Retry-After": "5"}
            )
        body = await read_limited(request, self.settings.max_body_bytes)
        job = await parse_off_loop(body, self.settings.policy, self.parse_limiter)
        if "namespace" in job.metadata.model_fields_set and job.metadata.namespace != namespace:
            raise HTTPException(
                403,
                f"metadata.namespace: '{job.metadata.namespace}' is not this request's namespace '{namespace}'; "
                f"leave it out or set it to '{namespace}'",
            )
        try:
            return JobObject.of(await run_in_threadpool(self.jobs.submit, namespace, job))
        except JobExists as e:
            raise HTTPException(409, str(e)) from None
        except QueueFull as e:
            raise HTTPException(429, str(e), headers={"Retry-After": "30"}) from None

    def get(self, namespace: str, name: str) -> JobObject:
        try:
            return JobObject.of(self.jobs.get(namespace, name))
        except JobNotFound:
            raise _not_found(namespace, name) from None

    def listed(self, namespace: str) -> JobList:
        return JobList(items=[JobObject.of(body) for body in self.jobs.list(namespace)])

    def delete(self, namespace: str, name: str) -> None:
        try:
            self.jobs.delete(namespace, name)
        except JobNotFound:
            raise _not_found(namespace, name) from None

    async def logs(self, namespace: str, name: str, query: LogQuery) -> StreamingResponse:
        if query.follow and self.follows >= self.settings.max_follows:
            raise HTTPException(
                429,
                f"{self.follows} log streams are being followed, the most this server keeps open; retry later, or "
                "read the log without follow=true",
                {"Retry-After": "30"},
            )
        try:
            lines = await run_in_threadpool(self.jobs.logs, namespace, name, query)
        except StageNotFound as e:
            raise HTTPException(404, e.args[0]) from None
        except JobNotFound:
            raise _not_found(namespace, name) from None
        except LogsUnavailable as e:
            raise HTTPException(503, str(e), {"Retry-After": "10"}) from None
        chunks = self._counted(_encoded(lines)) if query.follow else _encoded(lines)
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, counted in `follows` from the check above until the stream ends or the client leaves (its
        cancellation runs the `finally`). Counted from here, not from the check, so a response that never starts
        cannot hold a place for good."""
        self.follows += 1
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            self.follows -= 1


def create_app(jobs: Jobs, tokens: TokenFile, settings: ApiSettings = ApiSettings()) -> FastAPI:
    app = FastAPI(
        title=TITLE, version="v1", docs_url=None, redoc_url=None, openapi_url=None, description=__doc__,
        default_response_class=AsciiJSONResponse, redirect_slashes=False,  # `/v1/jobs/` is a 404 that says so
    )  # fmt: skip
    caller = caller_of(tokens)
    writer = writer_of(caller)
    _error_handlers(app)
    calls = JobCalls(jobs, settings)
    in_scope, submit, get, listed = calls.in_scope, calls.submit, calls.get, calls.listed
    delete, logs = calls.delete, calls.logs

    typed = {"response_model_exclude_none": True, "tags": ["jobs"]}
    body = {"openapi_extra": _request_body(), "status_code": 201, "responses": SUBMIT_ERRORS, **typed}
    read = {"responses": ERRORS, **typed}
    log = {"responses": {200: LOG_TEXT, **ERRORS, 503: {"model": ErrorBody, "description": "Logs cannot be read now."}},
           "response_class": StreamingResponse, "tags": ["jobs"]}  # fmt: skip

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        return Health(status="ok")

    @app.post("/v1/jobs", **body, summary="Submit a job in the token's namespace")
    async def submit_own(request: Request, token: Token = Depends(writer)) -> JobObject:
        return await submit(request, token, token.namespace)

    @app.get("/v1/jobs", **read, summary="List the jobs of the token's namespace")
    def list_own(token: Token = Depends(caller)) -> JobList:
        return listed(in_scope(token, token.namespace))

    @app.get("/v1/jobs/{name}", **read, summary="A job of the token's namespace, with its status")
    def get_own(name: JobName, token: Token = Depends(caller)) -> JobObject:
        return get(in_scope(token, token.namespace), name)

    @app.get("/v1/jobs/{name}/logs", **log, summary="A job's log (of the token's namespace)")
    async def logs_own(
        name: JobName, query: Annotated[LogParams, Query()], token: Token = Depends(caller)
    ) -> StreamingResponse:
        return await logs(in_scope(token, token.namespace), name, query.backend())

    @app.delete("/v1/jobs/{name}", status_code=204, responses=ERRORS, tags=["jobs"], summary="Stop and delete a job")
    def delete_own(name: JobName, token: Token = Depends(writer)) -> None:
        delete(in_scope(token, token.namespace), name)

    @app.post("/v1/namespaces/{namespace}/jobs", **body, summary="Submit a job")
    async def submit_in(namespace: Namespace, request: Request, token: Token = Depends(writer)) -> JobObject:
        return await submit(request, token, namespace)

    @app.get("/v1/namespaces/{namespace}/jobs", **read, summary="List the jobs of a namespace")
    def list_in(namespace: Namespace, token: Token = Depends(caller)) -> JobList:
        return listed(in_scope(token, namespace))

    @app.get("/v1/namespaces/{namespace}/jobs/{name}", **read, summary="A job, with its status")
    def get_in(namespace: Namespace, name: JobName, token: Token = Depends(caller)) -> JobObject:
        return get(in_scope(token, namespace), name)

    @app.get("/v1/namespaces/{namespace}/jobs/{name}/logs", **log, summary="A job's log")
    async def logs_in(
        namespace: Namespace, name: JobName, query: Annotated[LogParams, Query()], token: Token = Depends(caller)
    ) -> StreamingResponse:
        return await logs(in_scope(token, namespace), name, query.backend())

    @app.delete(
        "/v1/namespaces/{namespace}/jobs/{name}", status_code=204, responses=ERRORS, tags=["jobs"],
        summary="Stop and delete",
    )  # fmt: skip
    def delete_in(namespace: Namespace, name: JobName, token: Token = Depends(writer)) -> None:
        delete(in_scope(token, namespace), name)

    docs_guard = [] if settings.public_docs else [Depends(caller)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_guard)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_guard)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=TITLE)

    app.openapi = lambda: _openapi(app)
    return app


class LogParams(BaseModel):
    """Which lines of a job's log (`GET .../logs?follow=true&stage=pretrain&tail=100`)."""

    model_config = ConfigDict(extra="forbid")

    follow: bool = Field(False, description="Keep the response open and stream new lines until the job ends.")
    stage: str | None = Field(
        None, pattern=NAME_PATTERN, max_length=63, description="Only this stage's lines (its pods', on a cluster)."
    )
    tail: int | None = Field(None, ge=0, le=MAX_TAIL, description="Only the last N lines (per pod, on a cluster).")

    def backend(self) -> LogQuery:
        return LogQuery(stage=self.stage, tail=self.tail, follow=self.follow)


async def _encoded(lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for line in lines:
        yield line.encode("utf-8", errors="replace")


def _not_found(namespace: str, name: str) -> HTTPException:
    return HTTPException(404, f"no job named '{name}' in namespace '{namespace}'; GET /v1/jobs lists them")


def _request_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "An LLMJob, as JSON or YAML (metadata.namespace may be left out).",
            "content": {
                "application/json": {"schema": {"$ref": JOB_SCHEMA}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the LLMJob schema the POST routes take (generated from the same pydantic models)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        job = LLMJob.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(job.pop("$defs", {}))
        components[KIND] = job
        app.openapi_schema = schema
    return app.openapi_schema


def _rule(error: dict[str, Any]) -> str:
    """What a value in the URL must look like, in words, for the parameters whose pattern says it in regex."""
    loc = tuple(error["loc"])
    if len(loc) == 2 and loc[0] == "path" and loc[1] in PATH_RULES:
        return f"{PATH_RULES[loc[1]]}; got {str(error.get('input'))[:80]!r}"
    return error["msg"]


def _error_handlers(app: FastAPI) -> None:
    """One error shape for every refusal: {"error": what is wrong and what to do, "problems": [{path, message}]}."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        message = err.detail if err.detail and err.detail not in ("Not Found", "Method Not Allowed") else None
        content = {"error": message or REASONS.get(err.status_code, str(err.detail))}
        return AsciiJSONResponse(status_code=err.status_code, content=content, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": _rule(e)} for e in jsonable_encoder(err.errors())
        ]
        return AsciiJSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.exception_handler(SpecError)
    async def _invalid(_: Request, err: SpecError) -> JSONResponse:
        problems = [
            {"path": p.path, "message": p.message, **({"line": p.line} if p.line else {})} for p in err.problems
        ]
        return AsciiJSONResponse(status_code=422, content={"error": "invalid LLMJob", "problems": problems})

    @app.exception_handler(PreflightError)
    async def _not_runnable(_: Request, err: PreflightError) -> JSONResponse:
        problems = [p.as_json() for p in err.problems]
        return AsciiJSONResponse(status_code=422, content={"error": "cannot run on this server", "problems": problems})
