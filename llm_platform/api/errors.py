"""Turning validation failures into messages a person can act on.

Every problem carries the field path (`spec.stages[2].train.lr`), the YAML line where the field sits when the spec came
from YAML text, and what to do about it. `SpecError` lists *all* problems at once, so a user fixes a spec in one pass.
`Problem` is the one problem type of the project: spec validation, preflight (what a run needs before anything starts)
and the REST API's 422 bodies all carry it; `render_problems` is how a command line shows them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec or with what a run needs: where it is (`loc`, and `line` in the YAML file), what
    is wrong (`message`) and, when it is not part of the message, what to do (`hint`)."""

    loc: Loc
    message: str
    line: int | None = None
    hint: str = ""

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    @property
    def text(self) -> str:
        """The message and the hint as one sentence, without the place."""
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.text}"

    def as_json(self) -> dict[str, Any]:
        """The problem as the REST API's 422 bodies carry it."""
        body: dict[str, Any] = {"path": self.path, "message": self.message} if self.loc else {"message": self.message}
        if self.line is not None:
            body["line"] = self.line
        if self.hint:
            body["hint"] = self.hint
        return body


def render_problems(problems: list[Problem], source: str | None = None, head: str = "invalid LLMJob") -> str:
    """Problems as a command line prints them: one problem is one line (`file:line: path: what; what to do`); several
    get a head line naming the file, then one line each."""
    if len(problems) == 1:
        (problem,) = problems
        where = ":".join(x for x in (source, None if problem.line is None else str(problem.line)) if x)
        place = f"{problem.path}: " if problem.loc else ""
        return f"{where + ': ' if where else ''}{place}{problem.text}"
    lead = f"{source}: " if source else ""
    return f"{lead}{head} ({len(problems)} problems):\n" + "\n".join(f"  - {p}" for p in problems)


class SpecError(ValueError):
    """A spec that cannot run. `problems` lists every issue; the message shows them one per line."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{head}invalid LLMJob ({count}):\n" + "\n".join(f"  - {p}" for p in problems))


def shorten(text: str, limit: int = 120) -> str:
    """A value as a message quotes it: a hostile spec must not make its error messages huge."""
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def parse_loc(path: str) -> Loc:
    """'data.sources[0].type' -> ('data', 'sources', 0, 'type'): the inverse of `format_loc`."""
    loc: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        if name:
            loc.append(name)
        loc.extend(int(index.rstrip("]")) for index in indexes)
    return tuple(loc)


def format_loc(loc: Loc) -> str:
    """('spec', 'stages', 2, 'train', 'lr') -> 'spec.stages[2].train.lr'."""
    out = ""
    for part in loc:
        part = part if isinstance(part, int) else shorten(str(part), 80)
        if isinstance(part, int):
            out += f"[{part}]"
        elif "." in part or "/" in part:  # a key such as an annotation's `example.dev/name`
            out += f"['{part}']"
        else:
            out += f".{part}" if out else part
    return out or "<root>"


def problems_from_validation_error(err: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Rewrite pydantic's errors: readable paths, suggestions for unknown fields, the bad value shown."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if loc[-1:] == ("[key]",):  # pydantic's marker for a bad mapping key: the path is the key's own
            loc = loc[:-1]
        ctx = e.get("ctx") or {}
        if "problems" in ctx:  # graph-level problems raised by a model validator, each with its own path
            problems.extend(ctx["problems"])
            continue
        if e["type"] == "extra_forbidden":
            problems.append(Problem(loc, _unknown_field_message(model, loc)))
            continue
        message = e["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if e["type"] not in ("missing",) and not isinstance(e.get("input"), dict | list):
            message += f" (got {shorten(repr(e.get('input')))})"
        problems.append(Problem(loc, message))
    return problems


def _unknown_field_message(model: type[BaseModel], loc: Loc) -> str:
    """Name the unknown field and the closest valid ones, found by walking the model along the path."""
    name = str(loc[-1])
    fields = _fields_at(model, loc[:-1])
    hint = ""
    if fields:
        close = _closest(name, fields)
        hint = f"; did you mean '{close}'?" if close else f"; valid fields: {', '.join(sorted(fields))}"
    return f"unknown field '{name}'{hint}"


def _closest(name: str, fields: list[str]) -> str | None:
    """The field a typo most likely meant: an abbreviation (learning_rate -> lr) or the most similar spelling."""
    initials = "".join(word[0] for word in name.split("_") if word)
    for field in fields:
        if field == initials or "".join(w[0] for w in field.split("_") if w) == name:
            return field
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    return close[0] if close else None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside `X`, `X | None` or `list[X]`, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
