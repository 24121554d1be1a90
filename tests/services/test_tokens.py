"""Bearer tokens: `llmp api token create/list/revoke` through the real CLI, the token file holding hashes only, and
lookups that find the right entry and nothing else."""

from __future__ import annotations

import hashlib
import json
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.services.tokens import TokenFile, TokenFileError, add, match, new_token, parse_entries, read

runner = CliRunner()


def llmp(*args: str):
    return runner.invoke(app, list(args))


def test_create_prints_the_token_once_and_keeps_only_its_hash(tmp_path):
    path = tmp_path / "tokens.json"
    result = llmp("api", "token", "create", "--namespace", "research", "--read-only", "--tokens", str(path))
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("llmp_") and len(secret) >= 45
    text = path.read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = TokenFile(path).lookup(secret)
    assert token is not None and token.namespace == "research" and token.read_only

    listed = json.loads(llmp("api", "token", "list", "--tokens", str(path)).stdout)
    assert listed == [token.entry()]
    assert llmp("api", "token", "revoke", token.id, "--tokens", str(path)).exit_code == 0
    assert TokenFile(path).lookup(secret) is None
    result = llmp("api", "token", "revoke", token.id, "--tokens", str(path))
    assert result.exit_code == 2 and f"no token with id '{token.id}'" in result.output


def test_a_namespace_kubernetes_would_refuse_is_refused(tmp_path):
    result = llmp("api", "token", "create", "--namespace", "../etc", "--tokens", str(tmp_path / "t.json"))
    assert result.exit_code == 2 and "--namespace: namespace '../etc'" in result.output
    assert not (tmp_path / "t.json").exists()


def test_concurrent_creates_lose_no_entry(tmp_path):
    path = tmp_path / "tokens.json"
    with ThreadPoolExecutor(8) as pool:
        secrets = list(pool.map(lambda i: _create(path, f"ns-{i}"), range(16)))
    tokens = TokenFile(path)
    assert [tokens.lookup(s).namespace for s in secrets] == [f"ns-{i}" for i in range(16)]


def _create(path, namespace: str) -> str:
    secret, token = new_token(namespace, False)
    add(path, token)
    return secret


def test_token_ids_never_read_as_numbers_in_helm_set_or_yaml():
    import yaml

    ids = {new_token("ns", False)[1].id for _ in range(2000)}
    assert len(ids) == 2000
    assert all(isinstance(yaml.safe_load(f"id: {i}")["id"], str) and i[0].isalpha() for i in ids)


def test_lookup_finds_the_matching_entry_only():
    pairs = [new_token(f"ns-{i}", i % 2 == 1) for i in range(5)]
    tokens = [t for _, t in pairs]
    for secret, token in pairs:
        assert match(tokens, secret) == token
    assert match(tokens, "") is None
    assert match(tokens, pairs[0][0] + "x") is None
    assert match(tokens, tokens[0].sha256) is None  # the hash itself is not a token


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([], 'expected {"version": 1, "tokens": [...]}'),
        ({"tokens": ["x"]}, "tokens[0]: expected a mapping"),
        ({"tokens": [{"namespace": "A_b", "sha256": "0" * 64}]}, "tokens[0].namespace: expected a DNS-1123 label"),
        ({"tokens": [{"namespace": "a", "sha256": "0" * 63}]}, "tokens[0].sha256: expected 64 lowercase hex digits"),
        ({"tokens": [{"namespace": "a", "sha256": "0" * 64, "readOnly": "yes"}]}, "tokens[0].readOnly: expected true"),
    ],
)
def test_a_malformed_token_file_names_the_entry_and_field(data, says):
    with pytest.raises(TokenFileError, match=r"^f\.json: ") as error:
        parse_entries(data, "f.json")
    assert says in str(error.value)


def test_a_token_file_that_is_not_json_is_an_error_not_an_empty_list(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("{nope")
    with pytest.raises(TokenFileError, match="not JSON"):
        read(path)
    with pytest.raises(TokenFileError):
        TokenFile(path).lookup("llmp_x")
