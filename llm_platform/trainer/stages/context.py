"""What a stage runner gets: the job, its stage, the store, and its inputs as local folders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from llm_platform.api import LLMJob, Stage
from llm_platform.api.dag import EXTERNAL, input_sources
from llm_platform.confinement import check_local
from llm_platform.observability.console import make_console
from llm_platform.storage import ArtifactStore, S3Backend, StoreError
from llm_platform.storage.downloads import staged_download

from .model_from import committed_stage
from .progress import StageReporter


@dataclass
class StageContext:
    job: LLMJob
    stage: Stage
    store: ArtifactStore
    scratch: Path
    console: Console = field(default_factory=lambda: make_console(stderr=True))
    progress: StageReporter | None = None  # rank 0 of a running stage: its live status in the store (see progress)

    @property
    def sources(self) -> dict[str, str]:
        """Artifact name -> the stage that produces it (or EXTERNAL for spec.model.from)."""
        external = ["model"] if self.job.spec.model and self.job.spec.model.from_ else []
        return input_sources(self.job.spec.stages, self.stage.name, external)

    def input(self, artifact: str) -> Path:
        """A local folder holding `artifact` (e.g. 'tokens'), fetched from the stage that committed it."""
        source = self.sources.get(artifact)
        if source is None:
            raise RuntimeError(f"stage '{self.stage.name}' has no input '{artifact}'")
        if source == EXTERNAL:
            return fetch_uri(self.job.spec.model.from_, self.store)
        return self.store.fetch(source) / artifact

    def model_overrides(self) -> dict:
        """Settings to change on the input model as it is loaded: spec.model.overrides when the model is
        spec.model.from, then the stage's own `model.overrides` (context extension)."""
        overrides = {}
        if self.sources.get("model") == EXTERNAL:
            overrides |= self.job.spec.model.overrides
        if self.stage.model is not None:
            overrides |= self.stage.model.overrides
        return overrides

    def input_versions(self) -> dict[str, dict[str, str]]:
        """Which committed version each input comes from: recorded in the manifest, and part of the fingerprint."""
        versions: dict[str, dict[str, str]] = {}
        for artifact, source in self.sources.items():
            if source == EXTERNAL:
                versions[artifact] = {"uri": self.job.spec.model.from_}
                continue
            manifest = self.store.manifest(source)
            versions[artifact] = {"stage": source, "version": manifest.version if manifest else "missing"}
        return versions

    def fingerprint(self) -> str:
        """Hash of everything that determines this stage's output: its settings, the model spec, its inputs' versions.

        A committed stage whose fingerprint still matches is up to date and is skipped on re-runs."""
        settings = self.stage.model_dump(mode="json", exclude={"resources", "image", "needs"})
        model = self.job.spec.model.model_dump(mode="json") if self.job.spec.model else None
        payload = json.dumps({"stage": settings, "model": model, "inputs": self.input_versions()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fetch_uri(uri: str, store: ArtifactStore) -> Path:
    """A local folder for an external URI: a committed stage of another job (`<storage>/<stage>`: its model), a local
    path as is, an s3:// folder downloaded into the store's cache.

    The download goes into a temporary folder, is checked against the listing's sizes, and only then renamed into
    the cache, so an interrupted download is never mistaken for the model. The cache entry is named by a digest of
    the listing (keys, sizes, ETags): a folder replaced upstream, even by files of the same sizes, is downloaded
    again instead of served stale."""
    committed = _committed_stage_model(uri)
    if committed is not None:
        return committed
    if uri.startswith("s3://"):
        return _download_s3_folder(uri, store.cache_dir / "external")
    path = Path(uri.removeprefix("file://")).expanduser()
    check_local(path, "read", uri)
    if not path.exists():
        raise FileNotFoundError(f"spec.model.from: {uri} does not exist")
    return path


def _committed_stage_model(uri: str) -> Path | None:
    """`<storage>/<stage>` of another job, the folder a stage commits (manifest.json, versions/...): its committed
    `model/`, fetched and verified like any stage input. None when the URI is not such a folder."""
    found = committed_stage(uri)
    if found is None:
        return None
    parent, stage = found
    if not uri.startswith("s3://"):
        check_local(Path(uri.removeprefix("file://")).expanduser(), "read", uri)
    other = ArtifactStore.open(parent)  # on S3: the endpoint and credentials of the environment, as for any model
    if other.manifest(stage) is None:
        return None
    folder = other.fetch(stage) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"spec.model.from: stage '{stage}' in {parent} committed no model/ folder")
    return folder


def _download_s3_folder(uri: str, cache: Path) -> Path:
    bucket, _, prefix = uri[5:].rstrip("/").partition("/")
    backend = S3Backend(bucket, prefix)
    objects = backend.objects("")
    if not objects:
        raise FileNotFoundError(f"spec.model.from: {uri} holds no files")
    for key in objects:  # an object key becomes a local path: none may lead out of the download folder
        if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
            raise StoreError(f"spec.model.from: {uri} holds an object named {key[:200]!r}, which is not a file path")
    listing = json.dumps(sorted((key, size, etag) for key, (size, etag) in objects.items()))
    dest = cache / uri.replace("://", "_").replace("/", "_") / hashlib.sha256(listing.encode()).hexdigest()[:16]
    if dest.is_dir():
        return dest
    with staged_download(dest) as tmp:
        for key, (size, _) in objects.items():
            backend.get_file(key, tmp / key)
            got = (tmp / key).stat().st_size
            if got != size:
                raise StoreError(f"spec.model.from: {uri}/{key}: downloaded {got} bytes of {size}; try again")
    return dest
