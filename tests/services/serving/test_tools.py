"""Tool calls parsed out of model text and checked against the function's JSON schema (pure)."""

from __future__ import annotations

import json

import pytest

from llm_platform.services.openai_api.errors import APIError
from llm_platform.services.openai_api.protocol import ChatCompletionRequest, NamedToolChoice, Tool
from llm_platform.services.openai_api.tools import active_tools, parse_calls

from .tiny_model import WEATHER_TOOL

TOOLS = [Tool.model_validate(WEATHER_TOOL)]


def call(arguments, name="get_weather") -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def test_a_valid_call_parses_with_its_arguments_as_json():
    parsed = parse_calls("Let me check. " + call({"city": "Oslo", "unit": "celsius"}), TOOLS, "auto")
    assert parsed.error is None and parsed.content == "Let me check."
    assert parsed.calls == [("get_weather", '{"city": "Oslo", "unit": "celsius"}')]


def test_parallel_calls_all_come_back():
    parsed = parse_calls(call({"city": "Oslo"}) + call({"city": "Rome"}), TOOLS, "auto")
    assert [json.loads(a)["city"] for _, a in parsed.calls] == ["Oslo", "Rome"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (call({"unit": "celsius"}), "'city' is a required property"),
        (call({"city": "Oslo", "unit": "kelvin"}), "arguments['unit']: 'kelvin' is not one of"),
        (call({"city": 3}), "arguments['city']: 3 is not of type 'string'"),
        (call({"city": "Oslo"}, name="get_time"), "names 'get_time', which is not among the tools"),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "is not valid JSON"),
        ('<tool_call>{"name": "get_weather", "arguments": "[1]"}</tool_call>', "arguments are not a JSON object"),
    ],
)
def test_a_call_that_does_not_fit_its_schema_is_an_error_saying_why(text, problem):
    parsed = parse_calls(text, TOOLS, "auto")
    assert parsed.calls == [] and problem in parsed.error


def test_text_without_a_call_is_content_unless_a_call_is_required():
    assert parse_calls("It is sunny.", TOOLS, "auto").content == "It is sunny."
    assert "requires" in parse_calls("It is sunny.", TOOLS, "required").error
    named = NamedToolChoice.model_validate({"type": "function", "function": {"name": "get_weather"}})
    assert parse_calls("It is sunny.", TOOLS, named).error


def test_a_tool_whose_parameters_are_not_a_schema_is_refused_naming_it():
    broken = json.loads(json.dumps(WEATHER_TOOL))
    broken["function"]["parameters"] = {"type": "objekt"}
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=[broken])
    with pytest.raises(APIError) as refused:
        active_tools(request)
    assert refused.value.param == "tools[0].function.parameters"


def test_an_oversized_schema_is_refused():
    huge = json.loads(json.dumps(WEATHER_TOOL))
    huge["function"]["parameters"]["description"] = "x" * 40_000
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=[huge])
    with pytest.raises(APIError, match="longer than"):
        active_tools(request)
