"""Function calling: the tools go into the prompt, and a call comes back out of the model's text, checked.

The model is asked to answer a call as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the Hermes
format Qwen's and NousResearch's chat templates use, and vLLM's `hermes` parser reads). A call counts only when its
JSON parses, it names one of the request's functions, and its arguments validate against that function's JSON
schema (`jsonschema`); otherwise the choice ends with `finish_reason: "tool_call_error"` and a message saying what
was wrong, never with a call the client's code would choke on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .errors import invalid
from .protocol import ChatCompletionRequest, NamedToolChoice, Tool

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_SCHEMA_CHARS = 32_768
"""A bound on each function's schema: it is written into the prompt and run against every call the model makes."""
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


@dataclass
class ParsedCalls:
    """The text outside any call (None if empty), the calls as (name, arguments JSON), or the error."""

    content: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def active_tools(request: ChatCompletionRequest) -> list[Tool]:
    """The tools the model may call for this request (none with `tool_choice: none`), each schema checked."""
    if not request.tools or request.tool_choice == "none":
        return []
    names = [tool.function.name for tool in request.tools]
    for i, tool in enumerate(request.tools):
        if len(json.dumps(tool.function.parameters)) > MAX_SCHEMA_CHARS:
            raise invalid(
                f"tools[{i}].function.parameters is longer than {MAX_SCHEMA_CHARS} characters as JSON; simplify it",
                f"tools[{i}].function.parameters",
            )
        try:
            Draft202012Validator.check_schema(tool.function.parameters)
        except SchemaError as error:
            raise invalid(
                f"tools[{i}].function.parameters is not a valid JSON schema: {error.message}",
                f"tools[{i}].function.parameters",
            ) from None
        if names.count(tool.function.name) > 1:
            raise invalid(f"tools[{i}].function.name '{tool.function.name}' is listed twice", "tools")
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise invalid(
            f"tool_choice names function '{choice.function.name}', which is not in tools ({', '.join(names)})",
            "tool_choice",
        )
    return list(request.tools)


def instructions(tools: list[Tool], choice) -> str:
    """The system text that offers `tools` to a model whose chat template has no tool support of its own."""
    specs = "\n".join(json.dumps(tool.model_dump(mode="json", exclude_none=True)) for tool in tools)
    if isinstance(choice, NamedToolChoice):
        must = f"You must call the function {choice.function.name}."
    elif choice == "required":
        must = "You must call one of these functions."
    else:
        must = "Call a function only when it helps to answer."
    return (
        f"You can call these functions:\n<tools>\n{specs}\n</tools>\n{must} To call one, answer with "
        f'{OPEN}{{"name": <function name>, "arguments": <arguments as a JSON object>}}{CLOSE}.'
    )


def forced_prefix(choice) -> str:
    """The start of the answer when `tool_choice` names a function: written into the prompt, so the model only has
    to produce the arguments."""
    if isinstance(choice, NamedToolChoice):
        return f'{OPEN}{{"name": "{choice.function.name}", "arguments": '
    return ""


def _arguments(raw: object) -> dict | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    return raw if isinstance(raw, dict) else None


def _schema_error(arguments: dict, schema: dict) -> str | None:
    error = next(iter(sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: e.path)), None)
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.path) or " (top level)"
    return f"arguments{where}: {error.message}"


def parse_calls(text: str, tools: list[Tool], choice) -> ParsedCalls:
    """Find and check the calls in a completion's text. Pure."""
    schemas = {tool.function.name: tool.function.parameters for tool in tools}
    blocks = _BLOCK.findall(text)
    content = _BLOCK.sub("", text).strip() or None
    if not blocks:
        if choice == "required" or isinstance(choice, NamedToolChoice):
            return ParsedCalls(
                content, error="the model answered without calling a function, which tool_choice requires"
            )
        return ParsedCalls(content)
    calls = []
    for number, block in enumerate(blocks, start=1):
        try:
            call = json.loads(block.strip())
        except json.JSONDecodeError as error:
            return ParsedCalls(content, error=f"tool call {number} is not valid JSON ({error.msg} at {error.pos})")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return ParsedCalls(content, error=f'tool call {number} is not an object with a "name"')
        name = call["name"]
        if name not in schemas:
            return ParsedCalls(content, error=f"tool call {number} names '{name}', which is not among the tools")
        arguments = _arguments(call.get("arguments", call.get("parameters", {})))
        if arguments is None:
            return ParsedCalls(content, error=f"tool call {number} ({name}): arguments are not a JSON object")
        problem = _schema_error(arguments, schemas[name])
        if problem:
            return ParsedCalls(content, error=f"tool call {number} ({name}): {problem}")
        calls.append((name, json.dumps(arguments, ensure_ascii=False)))
    return ParsedCalls(content, calls)
