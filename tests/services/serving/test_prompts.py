"""Chat prompts: a template that handles tools gets them (and the history's calls) as transformers passes them."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from llm_platform.services.openai_api.prompts import chat_prompt
from llm_platform.services.openai_api.protocol import ChatCompletionRequest
from llm_platform.trainer.tokenizer import Tokenizer

from .tiny_model import WEATHER_TOOL

TOOL_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<|system|>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|end|>\n{% endif %}"
    "{% for m in messages %}<|{{ 'user' if m.role == 'tool' else m.role }}|>\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}call {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}"
    "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
MESSAGES = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "content": "12 C", "tool_call_id": "call_1"},
]


def test_a_tool_aware_template_renders_as_transformers_renders_it(tiny_chat_model, tmp_path):
    ours = Tokenizer.load(tiny_chat_model)
    ours.chat_template = TOOL_TEMPLATE
    request = ChatCompletionRequest(model="m", messages=MESSAGES, tools=[WEATHER_TOOL])
    ids, prefix = chat_prompt(request, ours, request.tools)
    hf = AutoTokenizer.from_pretrained(tiny_chat_model)
    hf.chat_template = TOOL_TEMPLATE
    history = [dict(m) for m in MESSAGES]
    history[0]["role"] = "system"
    history[2] = {
        **history[2],
        "content": "",
        "tool_calls": [
            {**CALL, "function": {**CALL["function"], "arguments": json.loads(CALL["function"]["arguments"])}}
        ],
    }
    text = hf.apply_chat_template(history, tools=[WEATHER_TOOL], add_generation_prompt=True, tokenize=False)
    assert prefix == ""
    assert ours.decode(ids) == text
    assert '"name": "get_weather"' in text and 'call get_weather {"city": "Oslo"}' in text
