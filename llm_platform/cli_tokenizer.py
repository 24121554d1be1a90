"""`llmp tokenizer`: train a tokenizer, encode text with one, measure its compression, convert between formats."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llm_platform.observability.console import make_console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = make_console()
err = make_console(stderr=True)

SourcesArg = Annotated[list[str], typer.Argument(help="Text or JSONL files, or globs such as 'data/**/*.txt'.")]
TokenizerArg = Annotated[Path, typer.Argument(help="Tokenizer folder, tokenizer.json, .tiktoken or .model file.")]
JsonlField = Annotated[str, typer.Option(help="Field holding the text in JSONL records.")]


class Trainer(StrEnum):
    bpe = "bpe"
    sentencepiece_bpe = "sentencepiece-bpe"
    sentencepiece_unigram = "sentencepiece-unigram"


class Format(StrEnum):
    all = "all"
    hf = "hf"
    tiktoken = "tiktoken"
    sentencepiece = "sentencepiece"


class DecodeErrors(StrEnum):
    error = "error"
    replace = "replace"
    skip = "skip"


def _fail(message: str) -> None:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


def _load(path: Path, pattern: str | None = None):
    from llm_platform.trainer.tokenizer import Tokenizer

    try:
        return Tokenizer.load(path, **({"pattern": pattern} if pattern else {}))
    except (OSError, ValueError) as error:
        _fail(str(error))


class _CountingTexts:
    """Counts the bytes that pass through to the trainer, for the MB/s line."""

    def __init__(self, texts):
        self.texts, self.bytes = texts, 0

    def __iter__(self):
        for text in self.texts:
            self.bytes += len(text.encode("utf-8"))
            yield text


@app.command()
def train(
    sources: SourcesArg,
    out: Annotated[Path, typer.Option(help="Folder to write the tokenizer files into.")],
    vocab_size: Annotated[int, typer.Option(help="Ids in the vocabulary, special tokens included.")] = 32_000,
    trainer: Annotated[Trainer, typer.Option(help="Byte-level BPE (HF trainer) or SentencePiece.")] = Trainer.bpe,
    pattern: Annotated[
        str | None, typer.Option(help="Pre-tokenization pattern: llama3, gpt2, o200k, or regex:<regex>.")
    ] = None,
    min_frequency: Annotated[int, typer.Option(help="Merge only pairs seen this often (bpe).")] = 2,
    special_tokens: Annotated[
        str | None, typer.Option(help="Comma-separated special tokens (default: bos, eos, pad, unk, chat roles).")
    ] = None,
    reserved: Annotated[int, typer.Option(help="Extra <|reserved_N|> special tokens.")] = 0,
    jsonl_field: JsonlField = "text",
    on_decode_error: Annotated[DecodeErrors, typer.Option(help="For files that are not UTF-8.")] = DecodeErrors.error,
) -> None:
    """Train a tokenizer on files and save it (tokenizer.json, .tiktoken or .model, tokenizer_config.json)."""
    from llm_platform.trainer.tokenizer import iter_texts, train_bpe
    from llm_platform.trainer.tokenizer.train_sentencepiece import train_sentencepiece

    specials = [t.strip() for t in special_tokens.split(",") if t.strip()] if special_tokens is not None else None
    texts = _CountingTexts(iter_texts(sources, jsonl_field=jsonl_field, on_decode_error=on_decode_error.value))
    start = time.perf_counter()
    try:
        if trainer is Trainer.bpe:
            options = {"pattern": pattern, "min_frequency": min_frequency}
            tokenizer = train_bpe(texts, vocab_size, special_tokens=specials, num_reserved=reserved, **options)
        else:
            if pattern is not None:
                _fail("--pattern applies to the bpe trainer only; SentencePiece does its own splitting")
            model_type = "bpe" if trainer is Trainer.sentencepiece_bpe else "unigram"
            tokenizer = train_sentencepiece(
                texts, vocab_size, model_type=model_type, special_tokens=specials, num_reserved=reserved
            )
    except (OSError, ValueError, TypeError) as error:
        _fail(str(error))
    seconds = time.perf_counter() - start
    files = tokenizer.save(out)
    console.print(
        f"trained {tokenizer.format} vocab of {tokenizer.vocab_size:,} on {texts.bytes / 1e6:,.1f} MB "
        f"in {seconds:.1f} s ({texts.bytes / 1e6 / seconds:,.2f} MB/s)",
        markup=False,
    )
    for file in files:
        console.print(f"  {file}", markup=False)


@app.command()
def encode(
    tokenizer_path: TokenizerArg,
    text: Annotated[str | None, typer.Argument(help="Text to encode; omit to read lines from --file or stdin.")] = None,
    file: Annotated[Path | None, typer.Option(help="Encode each line of this file (one JSON list per line).")] = None,
    bos: Annotated[bool, typer.Option(help="Prepend the bos token.")] = False,
    eos: Annotated[bool, typer.Option(help="Append the eos token.")] = False,
    allow_special: Annotated[bool, typer.Option(help="Turn special-token strings in the text into their ids.")] = False,
    tokens: Annotated[bool, typer.Option(help="Print {id, token} pairs instead of bare ids.")] = False,
) -> None:
    """Print the ids of TEXT (or of each input line) as JSON."""
    tokenizer = _load(tokenizer_path)
    if text is not None and file is not None:
        _fail("give TEXT or --file, not both")
    if text is not None:
        lines = [text]
    elif file is not None:
        if not file.is_file():
            _fail(f"--file {file} does not exist")
        lines = file.read_text(encoding="utf-8").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    batch = tokenizer.encode_batch(lines, add_bos=bos, add_eos=eos, allow_special=allow_special)
    for ids in batch:
        shown = [{"id": i, "token": tokenizer.id_to_token(i)} for i in ids] if tokens else ids
        typer.echo(json.dumps(shown, ensure_ascii=False))


@app.command()
def stats(
    tokenizer_path: TokenizerArg,
    sources: SourcesArg,
    jsonl_field: JsonlField = "text",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Compression (bytes/token, tokens/word) and unknown-byte rate of a tokenizer on held-out files."""
    from llm_platform.trainer.tokenizer import iter_texts
    from llm_platform.trainer.tokenizer.stats import compression_stats

    tokenizer = _load(tokenizer_path)
    try:
        result = compression_stats(tokenizer, iter_texts(sources, jsonl_field=jsonl_field)).as_dict()
    except (OSError, ValueError) as error:
        _fail(str(error))
    result = {"vocab_size": tokenizer.vocab_size, "format": tokenizer.format, **result}
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table("metric", "value")
    for name, value in result.items():
        table.add_row(
            name, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        )
    console.print(table)


@app.command()
def convert(
    source: TokenizerArg,
    out: Annotated[Path, typer.Option(help="Folder to write the converted files into.")],
    to: Annotated[Format, typer.Option(help="Format to write; all = every format the vocabulary allows.")] = Format.all,
    pattern: Annotated[
        str | None, typer.Option(help="Pattern (cl100k, gpt2, o200k, or regex:<regex>) for a bare .tiktoken file.")
    ] = None,
) -> None:
    """Convert between HF tokenizer.json, tiktoken and SentencePiece files, keeping ids identical."""
    tokenizer = _load(source, pattern)
    try:
        files = tokenizer.save(out, formats=None if to is Format.all else [to.value])
    except ValueError as error:
        _fail(str(error))
    for file in files:
        console.print(f"wrote {file}", markup=False)
