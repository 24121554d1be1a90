"""A tiny real model for the server tests: a byte-level BPE trained on standard-library source, and a two-layer
Llama taught (a few hundred steps on CPU) to answer two chats word for word: a weather question with a call of the
`get_weather` tool, and a greeting with a sentence. Greedy decoding then gives those answers through any path that
builds the same prompt ids, which is what lets the tests check tool calls end to end."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from llm_platform.services.openai_api.prompts import chat_prompt
from llm_platform.services.openai_api.protocol import ChatCompletionRequest
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.hf import save_pretrained
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.tokenizer import train_bpe
from llm_platform.trainer.train.export import write_generation_files

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION = "What is the weather in Paris?"
WEATHER_CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
GREETING = "Say hello."
GREETING_ANSWER = "Hello! How can I help you today?"
MODEL = {"dim": 64, "n_layers": 2, "n_heads": 4, "num_kv_heads": 2, "ffn_dim": 128, "max_seq_len": 512}


def _texts() -> list[str]:
    source = inspect.getsource(json) + inspect.getsource(json.decoder) + inspect.getsource(json.encoder)
    return [p for p in source.split("\n\n") if p.strip()] + [GREETING_ANSWER, WEATHER_QUESTION]


def _examples(tokenizer) -> list[tuple[list[int], list[int]]]:
    weather = ChatCompletionRequest(
        model="m", messages=[{"role": "user", "content": WEATHER_QUESTION}], tools=[WEATHER_TOOL]
    )
    greeting = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": GREETING}])
    end = [tokenizer.token_to_id("<|end|>")]
    call = f"<tool_call>{json.dumps(WEATHER_CALL)}</tool_call>"
    return [
        (chat_prompt(weather, tokenizer, weather.tools)[0], tokenizer.encode(call) + end),
        (chat_prompt(greeting, tokenizer, [])[0], tokenizer.encode(GREETING_ANSWER) + end),
    ]


def build(folder: Path, steps: int = 150) -> Path:
    """Train and save the model into `folder` (HF format with tokenizer and generation config); returns it."""
    torch.manual_seed(0)
    tokenizer = train_bpe(_texts(), 384)
    model = Transformer(get_config("llama-tiny", vocab_size=tokenizer.vocab_size, **MODEL))
    examples = _examples(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = 0.0
        for prompt, answer in examples:
            ids = torch.tensor([prompt + answer])
            logits = model(ids[:, :-1])
            targets = ids[:, 1:].clone()
            targets[:, : len(prompt) - 1] = -100  # learn the answers only
            loss = loss + torch.nn.functional.cross_entropy(logits[0], targets[0], ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_pretrained(model, folder)
    tokenizer.save(folder)
    write_generation_files(folder, tokenizer)
    return folder
