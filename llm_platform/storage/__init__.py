"""Artifact storage over local files and S3, with atomic versioned commits."""

from .backends import LocalBackend, S3Backend, make_s3_client
from .store import ArtifactStore, Manifest, StoreError

__all__ = ["ArtifactStore", "LocalBackend", "Manifest", "S3Backend", "StoreError", "make_s3_client"]
