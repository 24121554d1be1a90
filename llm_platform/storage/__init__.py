"""Artifact storage over local files and S3, with atomic, verified, single-writer versioned commits."""

from .backends import LocalBackend, S3Backend, make_s3_client
from .errors import CorruptArtifact, FileTooLarge, LeaseHeld, LeaseLost, StoreError
from .store import ArtifactStore, Manifest

__all__ = [
    "ArtifactStore",
    "CorruptArtifact",
    "FileTooLarge",
    "LeaseHeld",
    "LeaseLost",
    "LocalBackend",
    "Manifest",
    "S3Backend",
    "StoreError",
    "make_s3_client",
]
