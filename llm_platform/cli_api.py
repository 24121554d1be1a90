"""`llmp serve-api` (the jobs REST API) and `llmp api token ...` (who may call it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llm_platform.observability.console import make_console

app = typer.Typer(no_args_is_help=True, add_completion=False)
api_app = typer.Typer(no_args_is_help=True, help="The jobs REST API's bearer tokens.")
token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke bearer tokens (stored hashed).")
api_app.add_typer(token_app, name="token")

console = make_console()
err = make_console(stderr=True)
DEFAULT_TOKENS = Path("runs/api/tokens.json")
TokensOption = Annotated[
    Path, typer.Option("--tokens", help="The token file the server reads (JSON; holds sha256 hashes only).")
]


@app.command("serve-api")
def serve_api(
    backend: Annotated[
        str, typer.Option(help="local: run jobs here with the embedded executor; cluster: create LLMJob objects.")
    ] = "local",
    root: Annotated[Path, typer.Option(help="local: folder holding submitted jobs, their state and artifacts.")] = Path(
        "runs/api"
    ),
    namespace: Annotated[
        str | None, typer.Option(help="cluster: namespace of the jobs (default: this pod's namespace).")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="cluster: kubeconfig (default: in-cluster).")] = None,
    tokens: TokensOption = DEFAULT_TOKENS,
    public_docs: Annotated[bool, typer.Option(help="Serve /docs and /openapi.json without a token.")] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body taken (413 past it).")] = 256
    << 10,
    max_running: Annotated[int, typer.Option(min=1, help="local: jobs run at once.")] = 2,
    max_queued: Annotated[int, typer.Option(min=0, help="local: jobs waiting for a slot (429 past it).")] = 16,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
) -> None:
    """Serve the jobs REST API (POST /v1/jobs): run jobs here, or hand them to the operator on a cluster. Every route
    but /healthz needs a bearer token from `llmp api token create`."""
    import uvicorn

    from llm_platform.operator.options import options_from_env
    from llm_platform.services.jobs_api import ApiSettings, create_app
    from llm_platform.services.tokens import TokenFile, TokenFileError

    # the operator's allow-lists and image packages (the chart gives both pods the same environment); a bad variable
    # is a ValueError naming it, which the llmp group reports in one line
    options = options_from_env()
    if backend == "local":
        from llm_platform.services.local_jobs import LocalJobs

        # its own credentials go only to the storage endpoints and prefixes the operator's lists name
        # (LLMP_ALLOW_STORAGE_ENDPOINTS, LLMP_ALLOW_STORAGE_PREFIXES)
        jobs = LocalJobs(root, max_running=max_running, max_queued=max_queued, allow=options.allow)
    elif backend == "cluster":
        from llm_platform.operator.kube import Kube, load_configuration
        from llm_platform.services.cluster_jobs import USER_AGENT, ClusterJobs, pod_namespace

        kube = Kube(load_configuration(str(kubeconfig) if kubeconfig else None), user_agent=USER_AGENT)
        jobs = ClusterJobs(kube, namespace or pod_namespace(), options)
    else:
        err.print(f"--backend: expected 'local' or 'cluster', got '{backend}'")
        raise typer.Exit(2)
    token_file = TokenFile(tokens)
    try:
        if not token_file.tokens():
            err.print(f"{tokens}: no tokens yet, so every request but /healthz gets 401; create one with "
                      f"`llmp api token create --namespace NS --tokens {tokens}`", markup=False)  # fmt: skip
    except TokenFileError as e:
        err.print(str(e), markup=False)
        raise typer.Exit(2) from None
    settings = ApiSettings(max_body_bytes=max_body_bytes, public_docs=public_docs, policy=_server_policy(backend, root))
    uvicorn.run(create_app(jobs, token_file, settings), host=host, port=port)


@token_app.command("create")
def token_create(
    namespace: Annotated[str, typer.Option(help="The one namespace the token may act in.")],
    read_only: Annotated[
        bool, typer.Option("--read-only", help="May list and read jobs, not submit or delete.")
    ] = False,
    tokens: TokensOption = DEFAULT_TOKENS,
) -> None:
    """Create a token, add its hash to the token file and print the token (shown this once; it is not stored)."""
    from llm_platform.services.tokens import TokenFileError, add, new_token

    try:
        secret, token = new_token(namespace, read_only)
        add(tokens, token)
    except (ValueError, TokenFileError) as e:
        err.print(f"--namespace: {e}" if not isinstance(e, TokenFileError) else str(e), markup=False)
        raise typer.Exit(2) from None
    err.print(f"token {token.id} for namespace '{namespace}'{' (read-only)' if read_only else ''} added to {tokens}; "
              "it is shown once, below:", markup=False)  # fmt: skip
    typer.echo(secret)


@token_app.command("list")
def token_list(tokens: TokensOption = DEFAULT_TOKENS) -> None:
    """Print the token file's entries (ids, namespaces, verbs and hashes; never the tokens themselves) as JSON, the
    shape the chart's `api.auth.tokens` takes."""
    from llm_platform.services.tokens import TokenFileError, read

    try:
        entries = [t.entry() for t in read(tokens)]
    except TokenFileError as e:
        err.print(str(e), markup=False)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(entries, indent=2))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id `token list` shows.")], tokens: TokensOption = DEFAULT_TOKENS
) -> None:
    """Remove a token; a running server refuses it from its next request on."""
    from llm_platform.services.tokens import TokenFileError, revoke

    try:
        removed = revoke(tokens, token_id)
    except TokenFileError as e:
        err.print(str(e), markup=False)
        raise typer.Exit(2) from None
    if not removed:
        err.print(f"no token with id '{token_id}' in {tokens}; `llmp api token list` shows them", markup=False)
        raise typer.Exit(2)
    err.print(f"token {token_id} revoked", markup=False)


def _server_policy(backend: str, root: Path):
    """What submitted specs may reach: `LLMP_*` settings (`SpecPolicy.from_env`, strict: unset means nothing), plus,
    for the local backend, writing under its own root. The same roots go into this process's environment, so the
    `llmp run` processes it starts check the paths again when they open them."""
    import dataclasses
    import os

    from llm_platform.api.policy import SpecPolicy

    policy = SpecPolicy.from_env()
    if backend == "local":
        policy = dataclasses.replace(policy, write_roots=(*policy.write_roots, root.resolve()))
    os.environ["LLMP_READ_ROOTS"] = os.pathsep.join(str(r) for r in policy.read_roots)
    os.environ["LLMP_WRITE_ROOTS"] = os.pathsep.join(str(r) for r in policy.write_roots)
    return policy
