"""The LLMJob field reference (docs/reference.md), generated from the models' fields and descriptions."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .fields import PathRole
from .job import JobSpec


def reference_markdown() -> str:
    lines = [
        "# LLMJob field reference",
        "",
        "Generated from `llm_platform/api` by `llmp reference`; a test fails when this file drifts.",
        "",
    ]
    seen: set[type] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("spec", JobSpec)]
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        lines += [f"## `{path}` ({model.__name__})", ""]
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        if doc and not doc.startswith(("Usage docs", "A base class")):
            lines += [" ".join(doc.split()), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            lines.append(
                f"| `{key}` | {_field_type(field)} | {_default(field)} | "
                f"{(field.description or '').replace('|', '/')} |"
            )
            for sub in _models_in(field.annotation):
                queue.append((f"{path}.{key}" + ("[]" if _is_list(field.annotation) else ""), sub))
        lines.append("")
    return "\n".join(lines)


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return f"`{value!r}`" if not isinstance(value, BaseModel) else "(defaults)"
    return "" if field.default is PydanticUndefined or field.default is None else f"`{field.default!r}`"


def _field_type(field) -> str:
    """pydantic keeps the metadata of a top-level `Annotated` on the field, not in its annotation."""
    role = next((m.mode for m in field.metadata if isinstance(m, PathRole)), None)
    return _ROLE_NAMES.get(role) or _type_name(field.annotation)


_ROLE_NAMES = {"read": "path or URI (read)", "write": "path or URI (written)"}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        role = next((m.mode for m in annotation.__metadata__ if isinstance(m, PathRole)), None)
        return _ROLE_NAMES.get(role) or _type_name(args[0])
    if origin is typing.Literal:
        return " \\/ ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(a) for a in typing.get_args(annotation))
