"""The base class every LLMJob spec model derives from.

Specs are strict: an unknown field is an error (a typo such as `learning_rate` for `lr` must not be silently ignored),
and values are validated when assigned, so code that edits a spec cannot make it invalid behind the validator's back.
Numbers must be finite, and a boolean is not a number (`steps: true` would otherwise read as 1).
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and _bool_where_number(_annotation(cls, info.field_name), value):
            raise ValueError("expected a number, got a boolean")
        return value


@cache
def _annotation(cls: type[BaseModel], name: str) -> Any:
    return cls.model_fields[name].annotation


def _bool_where_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a boolean where `annotation` wants an int or a float (at the top or one level in)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _bool_where_number(args[0], value)
    if annotation in (int, float):
        return isinstance(value, bool)
    if origin is Literal:
        return isinstance(value, bool) and any(isinstance(a, int) and not isinstance(a, bool) for a in args)
    if origin in (typing.Union, types.UnionType):
        return isinstance(value, bool) and bool not in args and any(_bool_where_number(a, value) for a in args)
    if origin in (list, tuple) and isinstance(value, list | tuple) and args:
        return any(_bool_where_number(args[0], item) for item in value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_bool_where_number(args[0], k) or _bool_where_number(args[1], v) for k, v in value.items())
    return False
