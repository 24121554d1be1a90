"""Bounds on the shape of a spec, checked before any model sees it, so no input can exhaust memory, time or the stack.

A spec arrives as YAML text (`llmp`, `POST /v1/jobs`) or as an already-parsed object (the operator, a JSON body).
`structure_problems` walks the object once, without recursion, and refuses what no LLMJob needs: nesting deeper than
`MAX_DEPTH`, more than `MAX_NODES` values, more than `MAX_DOCUMENT_BYTES` of text, values that are not JSON types,
NaN or infinite numbers, integers beyond what JSON carries exactly. Real specs stay far below every limit (the
largest example is 2 KB, 6 levels deep, a few hundred values).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import Loc, Problem

MAX_DOCUMENT_BYTES = 256 * 1024  # a Kubernetes object may hold 1.5 MiB; a spec is a few KB
MAX_DEPTH = 32  # levels of mappings and lists (a spec uses about 8)
MAX_NODES = 20_000  # mappings, lists and scalars together
MAX_STAGES = 100  # each stage becomes a workload; a real pipeline has a handful
MAX_INT = 2**53  # integers JSON (and so Kubernetes and every client) carries exactly

_SCALARS = (str, int, float, bool, type(None))


def structure_problems(data: Any) -> list[Problem]:
    """What makes `data` too big, too deep or of the wrong types to be a spec; [] when it is fine to validate.

    Stops at the first limit crossed (a hostile document could otherwise produce a problem per value)."""
    nodes = 0
    size = 0
    stack: list[tuple[Any, Loc]] = [(data, ())]
    problems: list[Problem] = []
    while stack:
        value, loc = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return [Problem((), f"the spec holds more than {MAX_NODES} values; a spec this large is not accepted")]
        if len(loc) > MAX_DEPTH:
            return [Problem(loc[:MAX_DEPTH], f"nested deeper than {MAX_DEPTH} levels; a spec is never this deep")]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str | int) or isinstance(key, bool):
                    problems.append(Problem(loc, f"a mapping key must be a string, got {type(key).__name__}"))
                    continue
                size += len(str(key))
                stack.append((item, (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            size += len(value)
            if not value.isascii() and not _encodable(value):
                problems.append(Problem(loc, "not valid text: a lone UTF-16 surrogate"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(loc, f"{value} is not a finite number; write a real number"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            problems.append(Problem(loc, f"integer out of range (|value| must be at most 2^53), got {_short(value)}"))
        elif not isinstance(value, _SCALARS):
            problems.append(Problem(loc, f"a value of type {type(value).__name__} is not accepted; use JSON types"))
        if size > MAX_DOCUMENT_BYTES:
            return [Problem((), f"the spec holds more than {MAX_DOCUMENT_BYTES // 1024} KiB of text")]
    return problems


def stage_count_problems(data: dict) -> list[Problem]:
    """More stages than `MAX_STAGES`: refused before the models (and the graph checks) run on them."""
    spec = data.get("spec")
    stages = spec.get("stages") if isinstance(spec, dict) else None
    if isinstance(stages, list) and len(stages) > MAX_STAGES:
        return [
            Problem(
                ("spec", "stages"),
                f"{len(stages)} stages; at most {MAX_STAGES} are accepted (split the pipeline into several jobs)",
            )
        ]
    return []


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(value: int) -> str:
    text = str(value) if value.bit_length() < 200 else f"a {value.bit_length()}-bit number"
    return text
