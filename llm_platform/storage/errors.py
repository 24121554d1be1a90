"""What can go wrong in the store, as types: a caller falls back, re-runs or reports depending on which."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store operation that cannot succeed (missing artifact, corrupt file, another writer)."""


class CorruptArtifact(StoreError):
    """A committed file that is missing or differs from what its manifest records. Never read such a file: re-run
    the stage that produced it."""

    def __init__(self, uri: str, key: str, file: str, expected: str, actual: str):
        self.uri, self.key, self.file, self.expected, self.actual = uri, key, file, expected, actual
        super().__init__(
            f"artifact '{key}' in {uri} is corrupt: file '{file}' should have {expected} but has {actual}; "
            f"re-run the stage that produced it (e.g. `llmp run --from {key.split('/', 1)[0]}`)"
        )


class FileTooLarge(StoreError):
    """A file a job wrote that is larger than a reader takes (`ArtifactStore.read_bounded`); it was not read."""


class LeaseHeld(StoreError):
    """Another process is writing the key: a second writer would race the first one's commit and cleanup."""


class LeaseLost(StoreError):
    """This process's lease expired and another writer may have taken the key: publishing now could name files
    that writer's cleanup deleted, so the commit is abandoned instead."""
