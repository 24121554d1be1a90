"""Requests to token ids: completion prompts (text or ids) and chat messages through the tokenizer's template.

BOS follows the project's one rule (`llm_platform.trainer.tokenizer.bos`): a sequence starts with BOS whenever the
vocabulary has one. Text prompts get it here; chat prompts get it from the template (`{{ bos_token }}`), as
`apply_chat_template` gives it in transformers and vLLM.
"""

from __future__ import annotations

import json
from typing import Any

from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.bos import encode_text
from llm_platform.trainer.tokenizer.chat import ChatTemplateError

from . import tools as tool_calls
from .errors import invalid
from .protocol import ChatCompletionRequest, CompletionRequest, Message, Tool


def completion_prompts(request: CompletionRequest, tokenizer: Tokenizer) -> list[list[int]]:
    """One id list per prompt: a string, a list of strings, a list of ids, or a list of id lists."""
    prompt = request.prompt
    if isinstance(prompt, str):
        return [encode_text(tokenizer, prompt)]
    if all(isinstance(p, str) for p in prompt):
        return [encode_text(tokenizer, p) for p in prompt]
    batches = [prompt] if all(isinstance(p, int) for p in prompt) else prompt
    for i, ids in enumerate(batches):
        if not ids:
            raise invalid(f"prompt[{i}] is an empty list of token ids", "prompt")
        bad = next((t for t in ids if not 0 <= t < tokenizer.vocab_size), None)
        if bad is not None:
            raise invalid(
                f"prompt holds token id {bad}, outside the vocabulary (0..{tokenizer.vocab_size - 1})", "prompt"
            )
    return [list(ids) for ids in batches]


def _supports_tools(template: str) -> bool:
    return "tools" in template


def _plain_messages(messages: list[Message], tools: list[Tool], choice) -> list[dict[str, Any]]:
    """Messages for a template that knows only system/user/assistant: the tool offer becomes (part of) the system
    message, calls and results become text in the Hermes format the model is asked to answer in."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, text = message.role, message.text()
        if role == "developer":
            role = "system"
        if role == "tool":
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        if message.tool_calls:
            calls = (
                f'{tool_calls.OPEN}{{"name": {json.dumps(c.function.name)}, "arguments": {c.function.arguments}}}'
                f"{tool_calls.CLOSE}"
                for c in message.tool_calls
            )
            text = (text + "\n" if text else "") + "\n".join(calls)
        out.append({"role": role, "content": text})
    if tools:
        offer = tool_calls.instructions(tools, choice)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{offer}"
        else:
            out.insert(0, {"role": "system", "content": offer})
    return out


def _template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as transformers hands them to a tool-aware template: calls with their arguments as objects."""
    out = []
    for message in messages:
        role = "system" if message.role == "developer" else message.role  # OpenAI's newer name for system
        item: dict[str, Any] = {"role": role, "content": message.text()}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": json.loads(c.function.arguments)},
                }
                for c in message.tool_calls
            ]
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def chat_prompt(request: ChatCompletionRequest, tokenizer: Tokenizer, tools: list[Tool]) -> tuple[list[int], str]:
    """(prompt ids, the forced start of the answer) for a chat request."""
    template = tokenizer.chat_template
    if template is None:
        raise invalid("this model's tokenizer has no chat template; use /v1/completions", "messages")
    for i, message in enumerate(request.messages):
        for j, call in enumerate(message.tool_calls or []):
            try:
                json.loads(call.function.arguments)
            except json.JSONDecodeError:
                raise invalid(
                    f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON", "messages"
                ) from None
    prefix = tool_calls.forced_prefix(request.tool_choice) if tools else ""
    specials = {f"{role}_token": token for role, token in tokenizer.roles.items()}
    try:
        if _supports_tools(template):
            from llm_platform.trainer.tokenizer.chat import render_chat

            extra = {"tools": [t.model_dump(mode="json", exclude_none=True) for t in tools]} if tools else {}
            text = render_chat(
                template, _template_messages(request.messages), add_generation_prompt=True, **specials, **extra
            )
        else:
            text = tokenizer.render_chat(_plain_messages(request.messages, tools, request.tool_choice), True)
    except (ChatTemplateError, ValueError) as error:
        raise invalid(f"messages: {error}", "messages") from None
    return tokenizer.encode(text + prefix, allow_special=True), prefix
