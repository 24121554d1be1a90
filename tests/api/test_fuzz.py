"""Fuzzing the spec loader with mutated example specs (tests/api/mutate.py, a fixed seed).

For every case: the only exception is SpecError; every problem of a rejection says where (a field path, or the YAML
line for problems of the text itself); and every accepted spec satisfies the rules, checked here independently of the
validators: finite numbers, JSON-safe integers, Kubernetes names, image references, confined paths, bound credentials,
warm-up within the steps, a model config the trainer can build, an acyclic graph of at most MAX_STAGES stages.
"""

from __future__ import annotations

import math
import posixpath
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llm_platform.api import SpecError, parse_job, parse_job_text
from llm_platform.api.dag import topological_order
from llm_platform.api.fields import BUILTIN_DATASETS
from llm_platform.api.limits import MAX_STAGES
from llm_platform.api.policy import Credential, SpecPolicy
from llm_platform.trainer.model.config import get_config
from tests.api.mutate import Mutator

CASES = 1200
SEED = 20261203
SYSTEM = ("/etc", "/usr", "/bin", "/sbin", "/proc", "/sys", "/dev", "/boot", "/lib", "/root", "/run", "/var/lib")
READ_ROOT, WRITE_ROOT = Path("/srv/llmp-fuzz/data"), Path("/srv/llmp-fuzz/jobs")
POLICY = SpecPolicy.strict(
    read_roots=(READ_ROOT,),
    write_roots=(WRITE_ROOT,),
    credentials={"openai": Credential("OPENAI_API_KEY", ("https://api.openai.com/v1",))},
)
_DNS = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_IMAGE_CHARS = re.compile(r"[a-z0-9._/:@\[\]-]+")


def _walk(node: Any, loc: tuple = ()):
    yield loc, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*loc, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*loc, i))


def _confined(value: str, root: Path) -> bool:
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        return len(bucket) >= 3 and ".." not in key.split("/")
    local = value.removeprefix("file://")
    return local.startswith("/") and ".." not in local.split("/") and posixpath.normpath(local).startswith(f"{root}")


def violations(job: dict, raw: dict) -> list[str]:
    """Rules an accepted spec must satisfy, written without the validators' code."""
    found = []
    meta, spec = job["metadata"], job["spec"]
    if not _DNS.fullmatch(meta.get("namespace", "default")):
        found.append("namespace")
    for key, value in meta.get("labels", {}).items():
        if not _LABEL.fullmatch(key.rpartition("/")[2]) or not key or not _LABEL.fullmatch(value):
            found.append("label")
    for loc, value in _walk(job):
        if isinstance(value, float) and not math.isfinite(value):
            found.append(f"non-finite number at {loc}")
        if isinstance(value, int) and abs(value) > 2**53:
            found.append(f"integer out of range at {loc}")
        if loc and loc[-1] == "image" and isinstance(value, str) and _bad_image(value):
            found.append(f"image {value!r}")
        path_field = (
            isinstance(value, str)
            and _is_path_field(loc)
            and not _is_hub_id(job, loc, value)
            and value not in BUILTIN_DATASETS  # built in memory: no file is read
        )
        if path_field and not _confined(value, READ_ROOT):
            found.append(f"path {value!r} at {loc}")
    uri = spec.get("storage", {}).get("uri")
    if uri is not None:
        normal = posixpath.normpath(uri.removeprefix("file://"))
        if any(normal == d or normal.startswith(d + "/") for d in SYSTEM) or not _confined(uri, WRITE_ROOT):
            found.append(f"storage.uri {uri!r}")
    stages = spec["stages"]
    if not 1 <= len(stages) <= MAX_STAGES:
        found.append("stage count")
    topological_order(_Stages(stages))  # raises on a cycle or an unknown need
    for stage, raw_stage in zip(stages, raw["spec"]["stages"], strict=True):
        train = raw_stage.get("train") or {}
        if "warmup_steps" in train and "steps" in train and train["warmup_steps"] > train["steps"]:
            found.append("warmup_steps > steps")
        synthetic = (stage.get("data") or {}).get("synthetic")
        if synthetic and synthetic.get("credential"):
            allowed = POLICY.credentials.get(synthetic["credential"])
            urls = [synthetic["endpoint"], synthetic.get("judge_endpoint") or synthetic["endpoint"]]
            if allowed is None or not all(u.startswith(allowed.endpoints[0]) for u in urls):
                found.append("credential")
    model = spec.get("model")
    if model and model.get("preset"):
        get_config(model["preset"], **model.get("overrides", {}))  # raises if the trainer could not build it
    return found


def _bad_image(value: str) -> bool:
    repository = value.split("/")[-1].split(":")[0]
    return not _IMAGE_CHARS.fullmatch(value) or len(value) > 255 or repository != repository.lower()


def _is_path_field(loc: tuple) -> bool:
    """Fields holding a local path or URI the job reads (spec.storage.uri, written to, is checked on its own)."""
    if not loc or loc[:2] == ("spec", "storage"):
        return False
    return loc[-1] in ("path", "from", "data_dir", "word_list") or (
        loc[-1] in ("model", "tokenizer", "classifier") and "filters" in loc
    )


def _is_hub_id(job: dict, loc: tuple, value: str) -> bool:
    holder = job
    for part in loc[:-1]:
        holder = holder[part]
    return holder.get("type") == "hf" and not value.startswith(("/", ".", "~", "file://"))


class _Stages(list):
    def __init__(self, stages: list[dict]):
        super().__init__(type("S", (), {"name": s["name"], "needs": s.get("needs", [])}) for s in stages)


def _says_where(problem) -> bool:
    return bool(problem.loc) or problem.line is not None or problem.message.startswith("an LLMJob must be a mapping")


def test_fuzzed_specs_are_accepted_correctly_or_refused_with_a_field_path():
    counts: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for case in Mutator(SEED).cases(CASES):
        counts["cases"] += 1
        counts["yaml_text" if case.text is not None else "object"] += 1
        try:
            if case.text is not None:
                job = parse_job_text(case.text, policy=POLICY)
            else:
                job = parse_job(case.data, policy=POLICY)
        except SpecError as e:
            counts["rejected"] += 1
            unplaced = [str(p) for p in e.problems if not _says_where(p)]
            if not e.problems or unplaced:
                failures.append(f"{case.name}: rejection without a field path: {unplaced or 'no problems'}")
            if len(str(e)) > 5000 + 500 * len(e.problems):
                failures.append(f"{case.name}: a message of {len(str(e))} characters")
            continue
        except Exception as e:  # noqa: BLE001 - any other exception is exactly what this test looks for
            counts["crashed"] += 1
            failures.append(f"{case.name}: {type(e).__name__}: {str(e)[:200]}")
            continue
        counts["accepted"] += 1
        raw = case.data if case.data is not None else job.to_dict()
        try:
            bad = violations(job.to_dict(), raw)
        except (ValueError, TypeError) as e:
            bad = [f"{type(e).__name__}: {e}"]
        if bad:
            counts["accepted_bad"] += 1
            failures.append(f"{case.name}: accepted but {bad[:3]}")
    elapsed = time.perf_counter() - started
    print(f"\nspec fuzz: {dict(counts)} in {elapsed:.1f} s (seed {SEED})")
    assert counts["cases"] >= 1000 and counts["accepted"] >= 50 and counts["rejected"] >= 500, counts
    assert failures == [], "\n".join(failures[:30])


@pytest.mark.parametrize("example", sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")))
def test_every_example_passes_the_fuzz_policy_and_the_rules(example):
    job = parse_job_text(example.read_text(), policy=POLICY)
    assert violations(job.to_dict(), job.to_dict()) == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("metadata", "namespace"), "Team_A"),
        (("metadata", "labels"), {"team": "has space"}),
        (("spec", "image"), "$(rm -rf /)"),
        (("spec", "storage"), {"uri": "/etc"}),
        (("spec", "storage"), {"uri": "../../etc"}),
        (("spec", "storage"), {"uri": "s3:///x"}),
        (("spec", "model"), {"from": "/etc/hostname"}),
        (("spec", "stages", 0, "data", "sources"), [{"type": "files", "path": "/etc/hostname"}]),
        (("spec", "stages", 0, "data", "clean"), {"min_chars": float("nan")}),
        (("spec", "stages", 0, "data", "workers"), 2**60),
        (("spec", "model"), {"preset": "llama-tiny", "overrides": {"dim": -192}}),
    ],
)
def test_the_rule_checker_catches_each_kind_of_bad_spec(where, value):
    """The independent checker is only worth something if it flags what the issue found accepted."""
    job = parse_job_text((Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml").read_text()).to_dict()
    holder = job
    for part in where[:-1]:
        holder = holder[part]
    holder[where[-1]] = value
    assert _flags(job)


def _flags(job: dict) -> bool:
    try:
        return violations(job, job) != []
    except (ValueError, TypeError):
        return True  # the trainer's own config check refused it: caught too
