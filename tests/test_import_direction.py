"""The layers of `llm_platform` import downwards only, as docs/architecture.md draws them.

Every import of every module is read from its source (`ast`), including imports inside functions (a lazy import is
still a dependency; laziness only saves start-up time), and each must name a module of its own layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llm_platform"

# lowest first; a module's layer is that of the longest prefix of its name listed here
LAYERS: list[tuple[str, ...]] = [
    ("llm_platform.confinement", "llm_platform.observability", "llm_platform.storage"),
    ("llm_platform.trainer",),
    ("llm_platform.api",),
    ("llm_platform.services.openai_api", "llm_platform.services.openai_server"),
    ("llm_platform.trainer.stages",),
    ("llm_platform.executor", "llm_platform.run_summary", "llm_platform.operator"),
    ("llm_platform.services",),
    (
        "llm_platform.cli",
        "llm_platform.cli_adapter",
        "llm_platform.cli_api",
        "llm_platform.cli_errors",
        "llm_platform.cli_eval",
        "llm_platform.cli_operator",
        "llm_platform.cli_serve",
        "llm_platform.cli_status",
        "llm_platform.cli_tokenizer",
    ),
]
_RANK = {prefix: rank for rank, layer in enumerate(LAYERS) for prefix in layer}


def layer_of(module: str) -> int | None:
    """The layer of a module of ours (None for the package itself and for other packages)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = _RANK.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def upward_imports(name: str, source: str, is_package: bool = False) -> list[str]:
    """`line: module` for every import in the source of module `name` that names a higher layer than its own."""
    own = layer_of(name)
    package = name.split(".") if is_package else name.split(".")[:-1]
    upward = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            # `from pkg import mod` may name a submodule: check the deepest name it could be
            targets = [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{node.lineno}: {target}")
    return upward


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) is None]
    assert unplaced == ["llm_platform"]


def test_no_import_runs_up_a_layer():
    upward = {
        str(path.relative_to(PACKAGE.parent)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := upward_imports(module_name(path), path.read_text(), path.name == "__init__.py"))
    }
    assert upward == {}


def test_an_upward_import_is_seen_at_module_level_and_inside_a_function():
    source = "from llm_platform.storage import ArtifactStore\n\ndef f():\n    from ..stages import run_stage\n"
    assert upward_imports("llm_platform.trainer.train.loop", source) == ["4: llm_platform.trainer.stages.run_stage"]
    assert upward_imports("llm_platform.operator.render", "from llm_platform.trainer.stages import check") == []
