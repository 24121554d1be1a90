from __future__ import annotations

import numpy as np
import pytest

from .fixtures import corpus_token_file


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    """Real tokens (stdlib sources through a trained BPE) as the raw uint16 file the worker script reads."""
    return corpus_token_file(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tokens(token_file) -> np.ndarray:
    return np.fromfile(token_file, dtype=np.uint16)
