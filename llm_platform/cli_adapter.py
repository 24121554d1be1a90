"""`llmp adapter`: list PEFT adapter folders, merge adapters into a base model, and export a weighted combination of
adapters as one adapter folder.

    llmp adapter list out/sql out/chat
    llmp adapter merge base/ merged/ -a out/sql=0.7 -a out/chat=0.3     # a plain model, adapters folded in
    llmp adapter export base/ mix/ -a out/sql=0.7 -a out/chat=0.3      # one PEFT adapter: the weighted sum
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llm_platform.observability.console import make_console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = make_console()
err = make_console(stderr=True)

BaseArg = Annotated[
    Path, typer.Argument(help="The base model folder (Hugging Face format) the adapters were made for.")
]
AdapterOpt = Annotated[
    list[str],
    typer.Option("--adapter", "-a", help="A PEFT adapter folder, optionally with a weight: path=0.5 (default 1)."),
]


def parse_adapters(specs: list[str]) -> list[tuple[Path, float]]:
    """`path` or `path=weight` -> (path, weight); ValueError naming the argument."""
    if not specs:
        raise ValueError("--adapter: give at least one adapter folder")
    parsed = []
    for spec in specs:
        path, sep, weight = spec.rpartition("=") if "=" in spec else (spec, "", "1")
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"--adapter {spec!r}: weight {weight!r} is not a number; write path=0.5") from None
        if not (sep == "" or path) or value != value or abs(value) == float("inf"):
            raise ValueError(f"--adapter {spec!r}: write a folder, or folder=weight with a finite weight")
        parsed.append((Path(path), value))
    return parsed


def _combined_model(base: Path, specs: list[str]):
    """The base model with the adapters loaded and (when there are several, or a weight other than 1) combined into
    one installed adapter."""
    from llm_platform.trainer.adapters import combine_adapters, load_peft_adapter
    from llm_platform.trainer.model.hf import load_pretrained

    adapters = parse_adapters(specs)
    model = load_pretrained(base)
    for i, (path, _) in enumerate(adapters):
        load_peft_adapter(model, path, name=f"adapter{i}")
    if len(adapters) > 1 or adapters[0][1] != 1.0:
        combine_adapters(model, {f"adapter{i}": w for i, (_, w) in enumerate(adapters)}, name="combined")
    return model


def _fail(error: Exception) -> typer.Exit:
    err.print(f"llmp adapter: {error}", markup=False)
    return typer.Exit(2)


@app.command("list")
def list_adapters(
    folders: Annotated[list[Path], typer.Argument(help="PEFT adapter folders (adapter_config.json + safetensors).")],
) -> None:
    """What each adapter folder holds: kind, rank, alpha, how many layers, and the base model it names."""
    table = Table("adapter", "kind", "rank", "alpha", "layers", "base model")
    for folder in folders:
        try:
            raw = json.loads((folder / "adapter_config.json").read_text())
            kind = "dora" if raw.get("use_dora") else str(raw["peft_type"]).lower()
            targets = raw.get("target_modules") or []
            layers = str(len(targets)) if isinstance(targets, list) else str(targets)
            table.add_row(folder.name, kind, str(raw["r"]), str(raw["lora_alpha"]), layers,
                          str(raw.get("base_model_name_or_path")))  # fmt: skip
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise _fail(ValueError(f"{folder}: not a readable PEFT adapter folder ({e})")) from None
    console.print(table)


@app.command("merge")
def merge(
    base: BaseArg,
    dest: Annotated[Path, typer.Argument(help="Where to write the merged model (Hugging Face format).")],
    adapter: AdapterOpt = None,  # type: ignore[assignment]
) -> None:
    """Fold one adapter, or a weighted combination of several, into the base: a plain model, with the tokenizer."""
    from llm_platform.trainer.adapters import merge_lora
    from llm_platform.trainer.model.hf import save_pretrained
    from llm_platform.trainer.tokenizer import Tokenizer

    try:
        model = _combined_model(base, adapter or [])
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e) from None
    merge_lora(model)
    save_pretrained(model, dest)
    if (base / "tokenizer.json").is_file() or (base / "tokenizer.model").is_file():
        Tokenizer.load(base).save(dest)
    console.print(f"merged {len(adapter)} adapter(s) into {base} → {dest}", markup=False)


@app.command("export")
def export(
    base: BaseArg,
    dest: Annotated[Path, typer.Argument(help="Where to write the combined PEFT adapter folder.")],
    adapter: AdapterOpt = None,  # type: ignore[assignment]
) -> None:
    """Write a weighted combination of adapters as one PEFT adapter (exact: its rank is the sum of theirs)."""
    from llm_platform.trainer.adapters import save_peft_adapter

    try:
        model = _combined_model(base, adapter or [])
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e) from None
    save_peft_adapter(model, dest, base_model=str(base))
    console.print(f"combined {len(adapter)} adapter(s) → {dest}", markup=False)
