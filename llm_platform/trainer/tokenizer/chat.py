"""Chat templates: Jinja text that turns a list of messages into the exact string a chat model was trained on.

We render templates the way `transformers.apply_chat_template` does (sandboxed Jinja, `trim_blocks`,
`lstrip_blocks`, a `raise_exception` helper), so a template stored in `tokenizer_config.json` gives the same ids here
and in transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHAT_ROLES = ("system", "user", "assistant")

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('messages[' ~ loop.index0 ~ '].role must be system, user or assistant, "
    "got ' ~ message['role']) }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""Our format: `<|bos|><|user|>\\nHi<|end|>\\n<|assistant|>\\n...`, one role token per turn, `<|end|>` closing it."""


class ChatTemplateError(ValueError):
    """The template or the messages are wrong; the message says which."""


def _raise(message: str) -> None:
    raise ChatTemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False) -> str:
    """transformers' `tojson`: keys in their given order and no HTML escaping (Jinja's own sorts and escapes, which
    would change the prompt of every template that writes tools or arguments as JSON)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@cache
def _compile(template: str) -> jinja2.Template:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = _raise
    environment.filters["tojson"] = _tojson
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise ChatTemplateError(f"chat template line {err.lineno}: {err.message}") from None


def check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ChatTemplateError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ChatTemplateError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}"
            )
        for field in ("role", "content"):
            if not isinstance(message.get(field), str):
                raise ChatTemplateError(f"messages[{i}].{field} must be a string, got {message.get(field)!r}")


def render_chat(
    template: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool, **special_tokens: str | None
) -> str:
    """Render `messages` with `template`; `special_tokens` are `bos_token`, `eos_token`... as the template expects."""
    check_messages(messages)
    try:
        return _compile(template).render(
            messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt, **special_tokens
        )
    except jinja2.TemplateError as err:
        raise ChatTemplateError(f"chat template failed: {err}") from None
