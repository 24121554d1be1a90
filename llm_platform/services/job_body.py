"""A submitted job's body: read with a size limit, then parsed and validated off the event loop.

The limit is enforced while the body arrives: a declared Content-Length over it is refused before a byte is read, and
a chunked body is refused as soon as it passes the limit, so a 50 MiB upload costs the server nothing. Parsing and
validation run in a worker thread (at most a few at once), so a slow spec never stalls `/healthz` or other requests.
"""

from __future__ import annotations

import json
import logging

import anyio
from fastapi import HTTPException, Request

from llm_platform.api import LLMJob, Problem, SpecError, parse_job_text
from llm_platform.api.policy import SpecPolicy

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"request body over {limit:,} bytes, the most this server takes (`llmp serve-api --max-body-bytes`); "
            "an LLMJob is a few KiB: put data and models in storage and name them in the spec",
        )


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, policy: SpecPolicy) -> LLMJob:
    """The job in a JSON or YAML body (JSON is YAML), validated by the same code as `llmp validate` under the server's
    `policy` (which local paths, credentials and Secrets a caller's spec may name). Raises SpecError;
    anything else the validation raises is reported as a SpecError too (and logged as the bug it is), so a malformed
    request is never a 500."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        message = f"the body is not UTF-8 (byte {e.start}); send the LLMJob as JSON or YAML"
        raise SpecError([Problem((), message)], "request body") from None
    if not text.strip():
        raise SpecError([Problem((), "the body is empty; send an LLMJob as JSON or YAML")])
    try:
        job = parse_job_text(text, source="request body", policy=policy)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError([Problem((), "the body is nested too deeply to be an LLMJob")], "request body") from None
    except Exception as e:
        log.exception("validation crashed on a request body")
        raise SpecError(
            [Problem((), f"validation failed unexpectedly ({type(e).__name__}); this is a bug in llm-platform, "
                         "please report it with the spec")],
            "request body",
        ) from None  # fmt: skip
    _check_servable(job)
    return job


def _check_servable(job: LLMJob) -> None:
    """The job is stored and served as UTF-8 JSON: refuse what cannot be (NaN, unpaired surrogates from `\\ud800`)."""
    try:
        json.dumps(job.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as e:
        message = f"a string holds an unpaired surrogate ({e.object[e.start : e.end]!a}); send valid Unicode"
        raise SpecError([Problem((), message)], "request body") from None
    except ValueError:
        raise SpecError([Problem((), "a number is NaN or infinite; use a finite number")], "request body") from None


async def parse_off_loop(body: bytes, policy: SpecPolicy, limiter: anyio.CapacityLimiter) -> LLMJob:
    return await anyio.to_thread.run_sync(parse_body, body, policy, limiter=limiter)
