"""`spec.model.overrides`, typed: each key is a field of the trainer's `ModelConfig`, with that field's type and sane
bounds, and the preset with the overrides applied must be a model the trainer can build (`ModelConfig`'s own checks).

The model of the overrides is generated from the `ModelConfig` dataclass, so a field added there is accepted here
without a second declaration; a mapping, a boolean or a negative size where a number belongs is refused at load time
with the key's path, not deep inside a training pod.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import Field, ValidationError, create_model

from .base import SpecModel
from .errors import Problem

LOC = ("spec", "model", "overrides")
_SIZE = Annotated[int, Field(ge=0, le=2**31 - 1)]
_REAL = Annotated[float, Field(ge=0, le=1e12)]
_SETTING = bool | int | float | str


def _bounded(annotation: Any) -> Any:
    """`int` -> a non-negative 32-bit size, `float` -> a non-negative finite number; inside lists and optionals too."""
    if annotation is int:
        return _SIZE
    if annotation is float:
        return _REAL
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return list[_bounded(args[0])]
    if origin is dict:
        return dict[str, _SETTING]
    if args and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _bounded(inner) | None
    return annotation


@cache
def overrides_model() -> type[SpecModel]:
    from llm_platform.trainer.model.config import ModelConfig

    hints = typing.get_type_hints(ModelConfig)
    fields = {f.name: (_bounded(hints[f.name]), None) for f in dataclasses.fields(ModelConfig)}
    return create_model("ModelOverrides", __base__=SpecModel, **fields)


def override_problems(
    overrides: dict[str, Any], preset: str | None, loc: tuple[str, ...] = LOC
) -> tuple[dict[str, Any], list[Problem]]:
    """The overrides with their validated values, and every problem, each at `loc`.<key>. Without a preset the
    overrides apply to a checkpoint (`from`), which takes only the settings that leave its weights as they are."""
    from llm_platform.trainer.model.checkpoint_overrides import fixed_field_problems
    from llm_platform.trainer.model.config import get_config

    try:
        typed = overrides_model().model_validate(overrides)
    except ValidationError as e:
        return overrides, [_problem(err, loc) for err in e.errors(include_url=False)]
    values = typed.model_dump(exclude_unset=True)
    if preset is None:
        return values, [Problem((*loc, key), message) for key, message in fixed_field_problems(values).items()]
    try:
        get_config(preset, **values)
    except (ValueError, TypeError) as e:
        message = str(e)
        field = message.removeprefix("ModelConfig.").split(":", 1)[0]
        where = (*loc, field) if field in values else loc
        return values, [Problem(where, f"with preset '{preset}': {message.removeprefix(f'ModelConfig.{field}: ')}")]
    return values, []


def _problem(error: dict[str, Any], at: tuple[str, ...]) -> Problem:
    loc = (*at, *error["loc"])
    if error["type"] == "extra_forbidden":
        from llm_platform.trainer.model.config import unknown_fields_problem

        return Problem(loc, unknown_fields_problem(error["loc"][:1], "model override"))
    message = error["msg"].removeprefix("Value error, ")
    if not isinstance(error.get("input"), dict | list) and error["type"] != "missing":
        message += f" (got {error['input']!r})"[:200]
    return Problem(loc, message)
