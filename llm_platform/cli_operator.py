"""`llmp render` (the manifests a job becomes on a cluster, as a dry run) and `llmp operator` (run the operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def with_storage(job, storage: str):
    """The job with `--storage` as `spec.storage.uri`; a local folder becomes an absolute file:// URI."""
    uri = storage if "://" in storage else f"file://{Path(storage).expanduser().resolve()}"
    spec = job.spec.model_copy(update={"storage": job.spec.storage.model_copy(update={"uri": uri})})
    return job.model_copy(update={"spec": spec})


def render_manifests(
    job_file: Path,
    stage: str | None = None,
    namespace: str | None = None,
    image: str | None = None,
    storage: str | None = None,
) -> str:
    """Multi-document YAML of everything the operator would create for the job (or one stage of it), with `storage`
    (when given) as the job's artifact store."""
    from llm_platform.api import load_job
    from llm_platform.operator.options import RenderOptions
    from llm_platform.operator.render import render_job, to_yaml

    job = load_job(job_file)
    if storage is not None:
        job = with_storage(job, storage)
    if stage is not None:
        job.spec.stage(stage)  # KeyError names the stages there are
    defaults = RenderOptions()
    options = RenderOptions(image=image or defaults.image, namespace=namespace)
    return to_yaml(render_job(job, options, stage=stage))


@app.command()
def render(
    job_file: Annotated[Path, typer.Argument(help="The LLMJob YAML file.")],
    stage: Annotated[str | None, typer.Option(help="Render only this stage (and the spec ConfigMap).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace to render into (default: the job's).")] = None,
    image: Annotated[str | None, typer.Option(help="Default image for stages that name none.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Artifact store for the cluster (s3://bucket/prefix), instead of spec.storage.uri."),
    ] = None,
) -> None:
    """Print the Kubernetes manifests the operator creates for a job: a dry run to read or diff."""
    from llm_platform.api import SpecError
    from llm_platform.api.errors import render_problems
    from llm_platform.operator.options import RenderError

    try:
        text = render_manifests(job_file, stage, namespace, image, storage)
    except SpecError as e:
        typer.echo(render_problems(e.problems, e.source), err=True)
        raise typer.Exit(2) from None
    except RenderError as e:
        typer.echo(f"{job_file}: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyError as e:
        typer.echo(e.args[0], err=True)
        raise typer.Exit(2) from None
    typer.echo(text, nl=False)


def cluster_problem(kubeconfig: Path | None) -> str | None:
    """Why the operator could not reach a cluster, found before it starts: no k8s extra, or no credentials (neither a
    pod's service account nor a kubeconfig). None when the configuration loads."""
    try:
        import kopf  # noqa: F401  # the operator's framework: checked here so its absence is one line, not a traceback
        from kubernetes.config import ConfigException
    except ImportError as e:
        return f"llmp operator needs the '{e.name}' package, which is not installed; pip install 'llm-platform[k8s]'"
    from llm_platform.operator.kube import load_configuration

    try:
        load_configuration(str(kubeconfig) if kubeconfig else None)
    except (ConfigException, OSError) as e:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "no in-cluster service account and no kubeconfig"
        reason = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        return (
            f"llmp operator: {where}: {reason}; pass --kubeconfig FILE (or set KUBECONFIG) for a cluster, or run the "
            "operator in one (helm install llm-platform helm/llm-platform)"
        )
    return None


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None, typer.Option(help="Watch only this namespace (repeatable); default: all namespaces.")
    ] = None,
    peering: Annotated[
        str | None, typer.Option(help="kopf peering object (one active operator per peering).")
    ] = "llm-platform",
    standalone: Annotated[
        bool, typer.Option(help="No peering: only for a single operator (e.g. on a laptop).")
    ] = False,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0: off).")] = 9090,
    liveness_port: Annotated[int, typer.Option(help="Liveness probe port, /healthz (0: off).")] = 8080,
    webhook_port: Annotated[int, typer.Option(help="Admission webhook HTTPS port (0: no webhook).")] = 0,
    webhook_service: Annotated[
        str | None, typer.Option(help="NAME.NAMESPACE of the Service in front of the webhook.")
    ] = None,
    webhook_cert: Annotated[Path | None, typer.Option(help="TLS certificate (default: self-signed).")] = None,
    webhook_key: Annotated[Path | None, typer.Option(help="TLS key for --webhook-cert.")] = None,
    image: Annotated[str | None, typer.Option(help="Default trainer image (env LLMP_TRAINER_IMAGE).")] = None,
    vllm_image: Annotated[str | None, typer.Option(help="vLLM image for engine: vllm (env LLMP_VLLM_IMAGE).")] = None,
    allow_image: Annotated[
        list[str] | None,
        typer.Option(
            help="Image pattern jobs may name, e.g. 'ghcr.io/acme/*' (repeatable; env LLMP_ALLOW_IMAGES; "
            "default: the repositories of --image and --vllm-image)."
        ),
    ] = None,
    allow_secret: Annotated[
        list[str] | None,
        typer.Option(
            help="Secret (NAME or NAMESPACE/NAME pattern) jobs may name, for storage or a server's API key "
            "(repeatable; env LLMP_ALLOW_SECRETS, which the jobs API reads too; default: s3-credentials)."
        ),
    ] = None,
    allow_claim: Annotated[
        list[str] | None,
        typer.Option(
            help="PersistentVolumeClaim pattern jobs may mount as storage (repeatable; env LLMP_ALLOW_CLAIMS; "
            "default: none)."
        ),
    ] = None,
    allow_priority_class: Annotated[
        list[str] | None,
        typer.Option(
            help="PriorityClass pattern jobs may ask for (repeatable; env LLMP_ALLOW_PRIORITY_CLASSES; default: none)."
        ),
    ] = None,
    allow_storage_endpoint: Annotated[
        list[str] | None,
        typer.Option(
            help="S3 endpoint URL jobs may name as spec.storage.endpoint_url, e.g. 'http://minio.minio:9000': the "
            "storage Secret's credentials are sent there; matched by scheme, host and port, no patterns (repeatable; "
            "env LLMP_ALLOW_STORAGE_ENDPOINTS, which the jobs API reads too; default: none, so jobs use the "
            "Secret's AWS_ENDPOINT_URL or AWS S3)."
        ),
    ] = None,
    allow_storage_prefix: Annotated[
        list[str] | None,
        typer.Option(
            help="Where a job's s3:// store may lie, segment by segment, '{namespace}' standing for the job's "
            "namespace and '*' for any one segment, e.g. 's3://llm-artifacts/{namespace}': the operator and the jobs "
            "API read (and on cleanup: delete, remove) it with their own credentials (repeatable; env "
            "LLMP_ALLOW_STORAGE_PREFIXES, which the jobs API reads too; default: 's3://*/{namespace}')."
        ),
    ] = None,
    image_package: Annotated[
        list[str] | None,
        typer.Option(
            help="A module the trainer image provides, as preflight names it (repeatable; env "
            "LLMP_IMAGE_PACKAGES; default: what images/trainer/Dockerfile installs)."
        ),
    ] = None,
    resync_seconds: Annotated[float, typer.Option(help="Re-check every job this often.")] = 60.0,
    read_artifacts: Annotated[
        bool, typer.Option(help="Read checkpoints/versions from storage (needs the operator to have access).")
    ] = True,
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig (default: in-cluster, then ~/.kube).")] = None,
) -> None:
    """Run the LLMJob operator (kopf): render stages into PyTorchJob / RayJob / Job / Deployment and follow them."""
    problem = cluster_problem(kubeconfig)
    if problem is not None:
        typer.echo(problem, err=True)
        raise typer.Exit(2)
    from llm_platform.operator.handlers import HandlerSettings
    from llm_platform.operator.options import options_from_env
    from llm_platform.operator.runner import OperatorConfig, run_operator

    def listed(values: list[str] | None) -> tuple[str, ...] | None:
        return tuple(values) if values else None  # not given (an empty list comes from the environment)

    try:
        render_options = options_from_env(
            image=image,
            vllm_image=vllm_image,
            images=listed(allow_image),
            secrets=listed(allow_secret),
            claims=listed(allow_claim),
            priority_classes=listed(allow_priority_class),
            storage_endpoints=listed(allow_storage_endpoint),
            storage_prefixes=listed(allow_storage_prefix),
            image_packages=listed(image_package),
        )
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    config = OperatorConfig(
        handlers=HandlerSettings(render=render_options, resync_seconds=resync_seconds),
        namespaces=tuple(namespace or ()),
        peering=None if standalone else peering,
        metrics_port=metrics_port or None,
        liveness_port=liveness_port or None,
        webhook_port=webhook_port or None,
        webhook_service=webhook_service,
        webhook_cert=str(webhook_cert) if webhook_cert else None,
        webhook_key=str(webhook_key) if webhook_key else None,
        read_artifacts=read_artifacts,
        kubeconfig=str(kubeconfig) if kubeconfig else None,
    )
    run_operator(config)
