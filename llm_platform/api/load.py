"""Reading an LLMJob from YAML text, a file or a dict, with every problem reported against its YAML line.

Whatever the input, the outcome is an `LLMJob` or a `SpecError`: limits on size, depth and stage count are checked
before the models run (limits.py), YAML is read without aliases (yaml_reader.py), and the site's `SpecPolicy` decides
which local paths and credentials a spec may name (policy.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from pydantic import ValidationError

from .dag import naming_problems
from .errors import Loc, Problem, SpecError, problems_from_validation_error
from .job import LLMJob
from .limits import MAX_DOCUMENT_BYTES, stage_count_problems, structure_problems
from .policy import TRUSTED, SpecPolicy, policy_problems
from .yaml_reader import read_yaml

_MAX_PATH = 4096


def load_job(source: str | Path, policy: SpecPolicy = TRUSTED) -> LLMJob:
    """Parse and validate an LLMJob from a file path or from YAML text. Raises SpecError listing every problem."""
    if isinstance(source, Path) or _names_a_file(source):
        path = Path(source)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_DOCUMENT_BYTES + 1)
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise SpecError([Problem((), f"cannot read the file: {reason}")], source=str(path)) from e
        return parse_job_text(text, source=str(path), policy=policy)
    return parse_job_text(str(source), policy=policy)


def _names_a_file(source: str) -> bool:
    if "\n" in source or "\0" in source or len(source) > _MAX_PATH:
        return False
    try:
        return Path(source).is_file()
    except (OSError, ValueError):
        return False


def parse_job_text(text: str, source: str | None = None, policy: SpecPolicy = TRUSTED) -> LLMJob:
    data, root = read_yaml(text, source)
    if data is None:
        raise SpecError([Problem((), "expected one YAML document holding an LLMJob, found none", 1)], source)
    try:
        return parse_job(data, source=source, policy=policy)
    except SpecError as e:
        problems = [replace(p, line=p.line or _line_of(root, p.loc)) for p in e.problems]
        raise SpecError(problems, source) from None


def parse_job(data: Any, source: str | None = None, policy: SpecPolicy = TRUSTED) -> LLMJob:
    """Validate a dict (as the operator and the REST service receive it) into an LLMJob.

    `policy` says which local paths and credentials this caller may let a spec use: the default trusts the local
    user (`llmp run` on their own machine); the REST API and the operator pass a strict one (see policy.py)."""
    if not isinstance(data, dict):
        raise SpecError([Problem((), f"an LLMJob must be a mapping, got {type(data).__name__}")], source)
    problems = structure_problems(data) or stage_count_problems(data)
    if problems:
        raise SpecError(problems, source)
    try:
        job = LLMJob.model_validate(data)
    except ValidationError as e:
        problems = problems_from_validation_error(e, LLMJob)
        known = {p.loc for p in problems}
        problems += [p for p in naming_problems(_raw_stages(data)) if p.loc not in known]
        raise SpecError(problems, source) from None
    problems = policy_problems(job, policy)
    if problems:
        raise SpecError(problems, source)
    return job


def _raw_stages(data: dict) -> list[SimpleNamespace]:
    """Names and needs of the stages as written, for graph checks on a spec whose stages failed validation."""
    stages = (data.get("spec") or {}).get("stages") if isinstance(data.get("spec"), dict) else None
    if not isinstance(stages, list):
        return []
    raw = []
    for i, stage in enumerate(stages):
        stage = stage if isinstance(stage, dict) else {}
        needs = stage.get("needs") if isinstance(stage.get("needs"), list) else []
        raw.append(SimpleNamespace(name=str(stage.get("name", f"<stages[{i}]>")), needs=[str(n) for n in needs]))
    return raw


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the YAML node at `loc` (the key's line for mapping entries); None if the path is absent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
