"""`llmp serve`, `llmp generate`, `llmp chat`: the OpenAI-compatible server and two local trials of a model.

MODEL is a Hugging Face format folder (what our stages export, or any supported checkpoint), an `s3://` folder, or a
stage's output: `STORE/STAGE` (e.g. `runs/quickstart/pretrain`, `s3://bucket/job/sft`), the stage's committed model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm_platform.observability.console import make_console

app = typer.Typer(add_completion=False)
err = make_console(stderr=True)

ModelArg = Annotated[str, typer.Argument(help="A model folder, an s3:// folder, or STORE/STAGE (a stage's model).")]


def resolve_model(spec: str) -> Path:
    """The local folder for a MODEL argument; errors say which of the three spellings was tried and why it failed."""
    from llm_platform.storage import ArtifactStore, StoreError
    from llm_platform.trainer.stages.context import fetch_uri

    local = Path(spec).expanduser()
    if (local / "config.json").is_file():
        return local
    parent, _, stage = spec.rstrip("/").rpartition("/")
    if parent and stage:
        try:
            store = ArtifactStore.open(parent)
            if store.manifest(stage) is not None:
                folder = store.fetch(stage) / "model"
                if not (folder / "config.json").is_file():
                    raise typer.BadParameter(f"stage '{stage}' in {parent} committed no model/ folder")
                return folder
        except StoreError as error:
            raise typer.BadParameter(str(error)) from None
    if spec.startswith("s3://"):
        folder = fetch_uri(spec, ArtifactStore.open(str(Path.home() / ".cache" / "llm-platform" / "models")))
        if (folder / "config.json").is_file():
            return folder
    raise typer.BadParameter(
        f"{spec}: not a model folder (no config.json), nor a committed stage (STORE/STAGE); pass an exported "
        "model folder, s3://bucket/prefix of one, or e.g. runs/quickstart/pretrain"
    )


def _adapters(values: list[str]) -> dict[str, str]:
    adapters = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--adapter {value!r}: write NAME=PATH (a PEFT adapter folder)")
        if name in adapters:
            raise typer.BadParameter(f"--adapter: the name {name!r} is given twice")
        adapters[name] = str(resolve_adapter(path))
    return adapters


def resolve_adapter(path: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise typer.BadParameter(f"--adapter: {path} holds no adapter_config.json (a PEFT adapter folder)")
    return folder


@app.command()
def serve(
    model: ModelArg,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    name: Annotated[str | None, typer.Option(help="The model name clients send (default: the folder's name).")] = None,
    adapter: Annotated[list[str], typer.Option(help="NAME=PATH of a LoRA adapter to serve too (repeatable).")] = [],  # noqa: B006
    quantization: Annotated[str | None, typer.Option(help="int8 or int4 weight-only quantization.")] = None,
    draft_model: Annotated[str | None, typer.Option(help="A small model for speculative decoding.")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Clients must send it as a Bearer token (default: $LLMP_API_KEY; none: open).")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Sequences decoded together.")] = 32,
    max_pending: Annotated[int, typer.Option(help="Requests in flight past which the server answers 429.")] = 256,
    max_tokens: Annotated[int, typer.Option(help="The largest max_tokens a request may ask for.")] = 4096,
    content_filter: Annotated[str, typer.Option(help="off, log or block (toxicity and PII, both ways).")] = "off",
) -> None:
    """Serve MODEL over an OpenAI-compatible HTTP API (completions, chat, tools, streaming, /metrics)."""
    from llm_platform.api.serve import ContentFilterSpec
    from llm_platform.services.openai_api.state import Limits
    from llm_platform.services.openai_server import LoadFailed, ServeOptions, api_keys_from
    from llm_platform.services.openai_server import serve as run_server

    if quantization not in (None, "int8", "int4"):
        raise typer.BadParameter(f"--quantization: expected int8 or int4, got {quantization!r}")
    if content_filter not in ("off", "log", "block"):
        raise typer.BadParameter(f"--content-filter: expected off, log or block, got {content_filter!r}")
    folder = resolve_model(model)
    options = ServeOptions(
        model=folder,
        name=name or folder.name,
        host=host,
        port=port,
        adapters=_adapters(adapter),
        quantization=quantization,
        draft_model=str(resolve_model(draft_model)) if draft_model else None,
        api_keys=api_keys_from(api_key),
        limits=Limits(max_tokens=max_tokens, max_pending=max_pending),
        max_batch=max_batch,
        content_filter=ContentFilterSpec(mode=content_filter),
    )
    err.print(f"serving {options.name} from {folder} on http://{host}:{port}/v1 (Ctrl-C to stop)", markup=False)
    try:
        run_server(options)
    except LoadFailed as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None


def _engine(model: str):
    from llm_platform.trainer.inference.engine import LLMEngine

    return LLMEngine.from_pretrained(resolve_model(model))


def _params(max_tokens: int, temperature: float, top_p: float, seed: int | None):
    from llm_platform.trainer.inference.params import InvalidRequest, SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    try:
        params.validate()
    except InvalidRequest as error:
        raise typer.BadParameter(str(error)) from None
    return params


def _stream(engine, prompt_ids: list[int], params) -> str:
    """Generate, printing text as it comes; returns the whole completion."""
    engine.add_request("cli", prompt_ids, params)
    shown = ""
    while engine.has_unfinished_requests():
        for output in engine.step():
            text = output.outputs[0].text
            typer.echo(text[len(shown) :], nl=False)
            shown = text
    typer.echo()
    return shown


@app.command()
def generate(
    model: ModelArg,
    prompt: Annotated[str, typer.Option(help="The text to continue.")],
    max_tokens: Annotated[int, typer.Option()] = 64,
    temperature: Annotated[float, typer.Option()] = 0.7,
    top_p: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Continue PROMPT with MODEL and print the text as it is generated."""
    from llm_platform.trainer.tokenizer.bos import encode_text

    engine = _engine(model)
    if engine.tokenizer is None:
        raise typer.BadParameter(f"{model}: the folder holds no tokenizer files")
    _stream(engine, encode_text(engine.tokenizer, prompt), _params(max_tokens, temperature, top_p, seed))


@app.command()
def chat(
    model: ModelArg,
    system: Annotated[str | None, typer.Option(help="A system message to start with.")] = None,
    max_tokens: Annotated[int, typer.Option()] = 256,
    temperature: Annotated[float, typer.Option()] = 0.7,
    top_p: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Talk to MODEL through its chat template, answers streamed; an empty line or Ctrl-D ends."""
    engine = _engine(model)
    tokenizer = engine.tokenizer
    if tokenizer is None or tokenizer.chat_template is None:
        raise typer.BadParameter(f"{model}: the tokenizer has no chat template; try `llmp generate`")
    params = _params(max_tokens, temperature, top_p, seed)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        ids = tokenizer.encode_chat(messages, add_generation_prompt=True)
        if len(ids) >= engine.max_model_len:
            err.print(f"the conversation is {len(ids)} tokens, the model's context {engine.max_model_len}; ending")
            break
        budget = min(params.max_tokens, engine.max_model_len - len(ids))
        answer = _stream(engine, ids, _replace(params, max_tokens=budget))
        messages.append({"role": "assistant", "content": answer})


def _replace(params, **changes):
    import dataclasses

    return dataclasses.replace(params, **changes)
