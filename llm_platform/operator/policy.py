"""What the operator's configuration admits, checked when a job is submitted (the admission webhook, the jobs API's
cluster backend) and again at every reconcile (a job admitted before the configuration changed stops there):

- allow-lists: the images, Secrets, PersistentVolumeClaims and priority classes a job names must match the
  operator's patterns (`AllowList`), so a job cannot mount another team's Secret or run an arbitrary image; the
  S3 endpoint it names must be one the operator lists, so it cannot send an allowed Secret's credentials (which its
  pods send to `spec.storage.endpoint_url`) to a server of its choosing; and its S3 store must lie under a prefix
  the operator allows its namespace, so it cannot have the operator read or delete another team's artifacts;
- the trainer image's packages: the preflight `llmp run` runs before starting anything (unsupported settings,
  unrunnable task lists, missing optional packages), but checked against the packages the image is declared to
  provide (`RenderOptions.image_packages`): the operator cannot import the image, so DeepSpeed or fp8 without their
  packages are refused at submit time instead of failing in the pod.

Each problem names the field path and what to do.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from llm_platform.api import LLMJob, Stage
from llm_platform.api.errors import Loc, Problem, parse_loc
from llm_platform.api.policy import NAMESPACE_FIELD, same_endpoint, under_store_prefix
from llm_platform.trainer.stages.preflight import cuda_problems, needs, setting_problems

from .naming import PRIORITY_CLASS_ANNOTATION, STORAGE_CLAIM_ANNOTATION
from .options import AllowList, RenderOptions, job_options, namespace_of
from .render_pytorchjob import training_shape

ADMIN_HINT = "ask an administrator to allow it (operator flag {flag}, chart value operator.allow.{value})"
ENDPOINT_HINT = (
    "leave endpoint_url out to use the store the site configures (the AWS_ENDPOINT_URL of the storage Secret, or of "
    "a local jobs server, else AWS S3), name an allowed one, or ask an administrator to allow it (operator flag "
    "--allow-storage-endpoint or env LLMP_ALLOW_STORAGE_ENDPOINTS, chart value operator.allow.storageEndpoints)"
)
PREFIX_HINT = (
    "put the store under an allowed prefix (by default the bucket's first segment is the job's namespace: "
    "s3://BUCKET/NAMESPACE/JOB), or ask an administrator to allow it (operator flag --allow-storage-prefix or env "
    "LLMP_ALLOW_STORAGE_PREFIXES, chart value operator.allow.storagePrefixes)"
)


def image_repository(image: str) -> str:
    """`registry[:port]/path` of an image reference, without its tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def allowed_images(options: RenderOptions) -> tuple[str, ...]:
    if options.allow.images is not None:
        return options.allow.images
    repositories = dict.fromkeys(image_repository(i) for i in (options.image, options.vllm_image))
    return tuple(f"{repo}{sep}*" for repo in repositories for sep in (":", "@"))


def _allowed(patterns: tuple[str, ...], name: str, namespace: str | None = None) -> bool:
    qualified = f"{namespace}/{name}"
    return any(fnmatchcase(qualified if "/" in p and namespace else name, p) for p in patterns)


def _refusal(loc: Loc, what: str, patterns: tuple[str, ...], flag: str, value: str) -> Problem:
    allowed = ", ".join(patterns) or "none"
    hint = f"name an allowed one, or {ADMIN_HINT.format(flag=flag, value=value)}"
    return Problem(loc, f"{what} is not allowed by this operator (allowed: {allowed})", hint=hint)


def storage_problems(job: LLMJob, allow: AllowList, namespace: str | None) -> list[Problem]:
    """Where the job's store is, unless this site allows it: `spec.storage.endpoint_url` not one of
    `allow.storage_endpoints` (`same_endpoint`: scheme, host and port, default ports filled in), an `s3://`
    `spec.storage.uri` under none of `allow.storage_prefixes` for `namespace`. Whoever runs the job sends storage
    credentials to that endpoint, and the operator (reading checkpoints, deleting artifacts) and the jobs API (status,
    stored consoles) use their own on that prefix; so the webhook, every reconcile, the cleanup and both jobs API
    backends check this one rule against these lists. A `file://` store is confined elsewhere: on a cluster by the
    claim allow-list, on a jobs server by its spec policy's roots."""
    problems = []
    endpoint = job.spec.storage.endpoint_url
    if endpoint is not None and not any(same_endpoint(endpoint, e) for e in allow.storage_endpoints):
        allowed = ", ".join(allow.storage_endpoints) or "none"
        message = f"storage endpoint '{endpoint}' is not one this site allows (allowed: {allowed})"
        problems.append(Problem(("spec", "storage", "endpoint_url"), message, hint=ENDPOINT_HINT))
    uri = job.spec.storage.uri
    remote = uri is not None and "://" in uri and not uri.startswith("file://")
    if remote and not any(under_store_prefix(uri, p, namespace) for p in allow.storage_prefixes):
        shown = ", ".join(p.replace(NAMESPACE_FIELD, namespace or NAMESPACE_FIELD) for p in allow.storage_prefixes)
        message = f"store '{uri}' is not under a prefix this site allows (allowed: {shown or 'none'})"
        problems.append(Problem(("spec", "storage", "uri"), message, hint=PREFIX_HINT))
    return problems


def allow_list_problems(job: LLMJob, options: RenderOptions) -> list[Problem]:
    allow, namespace, problems = options.allow, namespace_of(job, options), []
    images = allowed_images(options)
    named = [(("spec", "image"), job.spec.image)] + [
        (("spec", "stages", i, "image"), s.image) for i, s in enumerate(job.spec.stages)
    ]
    for field, image in named:
        if image is not None and not _allowed(images, image):
            problems.append(_refusal(field, f"image '{image}'", images, "--allow-image", "images"))
    secrets = [(("spec", "storage", "secret_ref"), job.spec.storage.secret_ref)] + [
        (("spec", "stages", i, "serve", "api_key_secret"), s.serve.api_key_secret)
        for i, s in enumerate(job.spec.stages)
        if s.serve is not None
    ]
    for field, secret in secrets:
        if secret is not None and not _allowed(allow.secrets, secret, namespace):
            problems.append(_refusal(field, f"Secret '{secret}'", allow.secrets, "--allow-secret", "secrets"))
    problems += storage_problems(job, allow, namespace)
    jopts = job_options(job)
    if jopts.storage_claim is not None and not _allowed(allow.claims, jopts.storage_claim, namespace):
        field = ("metadata", "annotations", STORAGE_CLAIM_ANNOTATION)
        what = f"PersistentVolumeClaim '{jopts.storage_claim}'"
        problems.append(_refusal(field, what, allow.claims, "--allow-claim", "claims"))
    if jopts.priority_class is not None and not _allowed(allow.priority_classes, jopts.priority_class):
        field = ("metadata", "annotations", PRIORITY_CLASS_ANNOTATION)
        what = f"PriorityClass '{jopts.priority_class}'"
        problems.append(_refusal(field, what, allow.priority_classes, "--allow-priority-class", "priorityClasses"))
    return problems


def runs_stage_runner(stage: Stage) -> bool:
    """Whether the stage's pods run `llmp stage run` (every stage but vLLM serving, which runs the vLLM image)."""
    return not (stage.kind == "serve" and stage.serve is not None and stage.serve.engine == "vllm")


def image_preflight_problems(job: LLMJob, options: RenderOptions) -> list[Problem]:
    """`llmp run`'s preflight for every stage our image runs, with `options.image_packages` as what is installed."""
    problems: list[Problem] = []
    provided = set(options.image_packages)
    for i, stage in enumerate(job.spec.stages):
        if not runs_stage_runner(stage):
            continue
        where = ("spec", "stages", i)
        found = setting_problems(stage)
        if stage.trains and training_shape(stage)[1] == 0:
            no_gpu = "its pods get no GPU (train.parallel.gpus_per_node and resources.gpus are 0)"
            found += cuda_problems(stage, no_gpu, "set train.parallel.gpus_per_node >= 1")
        problems += [Problem((*where, *p.loc), p.message, hint=p.hint) for p in found]
        for need in needs(stage):
            if provided.isdisjoint(need.modules):
                module = need.modules[0]
                message = (
                    f"needs the '{module}' package, which the trainer image does not provide (it provides: "
                    f"{', '.join(sorted(provided)) or 'none'})"
                )
                hint = (
                    f"use an image built with it ({need.install}) and declare it to the operator (flag "
                    f"--image-package {module}, chart value operator.imagePackages)"
                )
                problems.append(Problem((*where, *parse_loc(need.field)), message, hint=hint))
    return problems


def policy_problems(job: LLMJob, options: RenderOptions) -> list[Problem]:
    return allow_list_problems(job, options) + image_preflight_problems(job, options)
