"""Reading an LLMJob from YAML text, a file or a dict, with every problem reported against its YAML line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from pydantic import ValidationError

from .dag import naming_problems
from .errors import Loc, Problem, SpecError, problems_from_validation_error
from .job import LLMJob


def load_job(source: str | Path) -> LLMJob:
    """Parse and validate an LLMJob from a file path or from YAML text. Raises SpecError listing every problem."""
    if isinstance(source, Path) or ("\n" not in source and Path(source).is_file()):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SpecError([Problem((), f"cannot read the file: {e.strerror}")], source=str(path)) from e
        return parse_job_text(text, source=str(path))
    return parse_job_text(str(source))


def parse_job_text(text: str, source: str | None = None) -> LLMJob:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise SpecError([Problem((), f"not valid YAML: {getattr(e, 'problem', e)}", line)], source) from e
    if len(documents) != 1:
        raise SpecError([Problem((), f"expected one YAML document holding an LLMJob, found {len(documents)}")], source)
    root = yaml.compose(text)
    try:
        return parse_job(documents[0], source=source)
    except SpecError as e:
        problems = [Problem(p.loc, p.message, p.line or _line_of(root, p.loc)) for p in e.problems]
        raise SpecError(problems, source) from None


def parse_job(data: Any, source: str | None = None) -> LLMJob:
    """Validate a dict (as the operator and the REST service receive it) into an LLMJob."""
    if not isinstance(data, dict):
        raise SpecError([Problem((), f"an LLMJob must be a mapping, got {type(data).__name__}")], source)
    try:
        return LLMJob.model_validate(data)
    except ValidationError as e:
        problems = problems_from_validation_error(e, LLMJob, data)
        known = {p.loc for p in problems}
        problems += [p for p in naming_problems(_raw_stages(data)) if p.loc not in known]
        raise SpecError(problems, source) from None


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
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
