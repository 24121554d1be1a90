"""The jobs REST API: `POST /v1/jobs` takes an LLMJob (JSON or YAML) and runs it; GET lists and reads status.

Two backends behind one interface: the embedded one runs each job here with `llmp run`; the cluster one creates the
LLMJob object, which the operator runs (`llmp serve-api --backend cluster`, the chart's `api.enabled`).

Validation is the same `llm_platform.api` code as `llmp validate` and the admission webhook, so a bad spec gets the same
messages here (as a 422 whose body lists every problem with its field path). A valid job that asks for what this
server cannot run (a stage kind without a runner yet, a missing optional package) is a 422 too, before anything starts.
"""

from __future__ import annotations

from typing import Any, Protocol

import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from llm_platform.api import LLMJob, SpecError, parse_job
from llm_platform.trainer.stages.preflight import PreflightError

from .local_jobs import JobExists, JobNotFound


class Jobs(Protocol):
    """A backend: `LocalJobs` (runs `llmp run` here) or `ClusterJobs` (creates LLMJob objects for the operator)."""

    def submit(self, job: LLMJob) -> dict[str, Any]: ...
    def names(self) -> list[str]: ...
    def get(self, name: str) -> dict[str, Any]: ...
    def delete(self, name: str) -> None: ...


def create_app(jobs: Jobs) -> FastAPI:
    app = FastAPI(title="llm-platform jobs API", version="v1")

    @app.exception_handler(SpecError)
    async def _invalid(_: Request, err: SpecError) -> JSONResponse:
        problems = [{"path": p.path, "message": p.message} for p in err.problems]
        return JSONResponse(status_code=422, content={"error": "invalid LLMJob", "problems": problems})

    @app.exception_handler(PreflightError)
    async def _not_runnable(_: Request, err: PreflightError) -> JSONResponse:
        problems = [{"message": p} for p in err.problems]
        return JSONResponse(status_code=422, content={"error": "cannot run on this server", "problems": problems})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        body = await request.body()
        try:
            data = yaml.safe_load(body)  # JSON is YAML, so one parser takes both content types
        except yaml.YAMLError as e:
            raise HTTPException(400, f"request body is neither JSON nor YAML: {e}") from None
        job = parse_job(data)
        try:
            return jobs.submit(job)
        except JobExists as e:
            raise HTTPException(409, str(e)) from None

    @app.get("/v1/jobs")
    def list_jobs() -> dict[str, list[dict[str, Any]]]:
        return {"items": [jobs.get(name) for name in jobs.names()]}

    @app.get("/v1/jobs/{name}")
    def get_job(name: str) -> dict[str, Any]:
        try:
            return jobs.get(name)
        except JobNotFound:
            raise HTTPException(404, f"no job named '{name}'") from None

    @app.delete("/v1/jobs/{name}", status_code=204)
    def delete_job(name: str) -> None:
        try:
            jobs.delete(name)
        except JobNotFound:
            raise HTTPException(404, f"no job named '{name}'") from None

    return app
