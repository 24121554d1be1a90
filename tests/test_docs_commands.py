"""Every command the README and docs/*.md show works as shown.

- Each line of a fenced shell block (```bash, ```sh, ```shell, ```console) either runs here, offline on CPU in
  seconds, through a real shell with `llmp` on PATH (globs, pipes and redirects as a reader's shell does them), and
  must exit 0; or it is in `NOT_RUN_HERE` with the reason it cannot run in a test. A command in neither fails the
  test, so a new one cannot slip in unchecked.
- Each inline `llmp ...` span names a command that exists, and every `--option` it shows is an option of it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from llm_platform.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(llmp [^`]+)`")

RUN_HERE = ("llmp --version", "llmp validate", "llmp render", "llmp schema", "llmp crd", "llmp model presets")
"""Commands that run offline on CPU in seconds: run as written (any command ending in --help is run too)."""

NOT_RUN_HERE = {
    "make run": "the whole quickstart pipeline, minutes of CPU; it is checked by running it",
    "make test": "the whole test suite, this test included",
    "kubectl ": "needs a Kubernetes cluster; tests/operator/test_kubectl.py drives the real kubectl against the "
    "API emulator",
    "helm install": "needs a Kubernetes cluster; tests/deploy renders and checks the chart with the real helm",
    "llmp run ": "trains models for minutes; tests/executor/test_run_local.py runs `llmp run` end to end",
    "llmp serve ": "a long-running server over a trained model; tests/cli/test_serve_cli.py starts it",
    "llmp generate ": "needs the quickstart's trained model (runs/quickstart); tests/cli/test_serve_cli.py",
    "llmp chat ": "interactive, over the quickstart's trained model; tests/cli/test_serve_cli.py",
    "llmp operator": "needs a Kubernetes cluster; tests/operator/test_cli.py runs it against the API emulator",
}


def shell_commands(text: str) -> list[str]:
    """The commands of the fenced shell blocks: continuation lines joined, `$ ` prompts and comments dropped."""
    commands = []
    for match in SHELL_BLOCK.finditer(text):
        body = re.sub(r"\\\n\s*", " ", match.group(2))
        for line in body.splitlines():
            line = line.strip().removeprefix("$ ")
            command = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
            if command:
                commands.append(command)
    return commands


def documented() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS for command in shell_commands(path.read_text())]


def runs_here(command: str) -> bool:
    return command.endswith("--help") or command.startswith(RUN_HERE)


def test_every_documented_command_is_run_or_says_why_not():
    unchecked = [
        f"{doc}: {command}"
        for doc, command in documented()
        if not runs_here(command) and not command.startswith(tuple(NOT_RUN_HERE))
    ]
    assert unchecked == [], "run these in this test (RUN_HERE) or give the reason they cannot run (NOT_RUN_HERE)"


def test_the_docs_show_commands_that_run_here():
    assert sum(runs_here(command) for _, command in documented()) >= 4


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A folder like a fresh clone's root (examples/ beside it) with `llmp` on PATH, running this checkout's code."""
    root = tmp_path_factory.mktemp("reader")
    (root / "examples").symlink_to(REPO / "examples")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    llmp = bin_dir / "llmp"
    llmp.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m llm_platform.cli "$@"\n')
    llmp.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    return root, env


@pytest.mark.parametrize(
    "doc,command", [dc for dc in documented() if runs_here(dc[1])], ids=lambda x: x if "/" not in x else None
)
def test_documented_command_runs(shell, doc, command):
    root, env = shell
    result = subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{doc}: `{command}` exited {result.returncode}:\n{result.stderr[-2000:]}"


def inline_commands() -> list[tuple[str, str]]:
    return [(path.name, " ".join(m.group(1).split())) for path in DOCS for m in INLINE.finditer(path.read_text())]


def resolve(words: list[str]):
    """The click command a documented `llmp w1 w2 ...` names, and the words left over (arguments)."""
    command = typer.main.get_command(app)
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    return command, words


def test_inline_llmp_commands_exist_with_the_options_they_show():
    wrong = []
    for doc, text in inline_commands():
        words = text.split()[1:]
        command, rest = resolve(list(words))
        if rest and hasattr(command, "commands") and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            alternatives = rest[0].split("|")  # `llmp adapter list|merge|export`
            if not all(a in command.commands for a in alternatives):
                wrong.append(f"{doc}: `{text}`: no command '{rest[0]}'")
            continue
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        plain = re.sub(r"[\[\]|\\]", " ", text)  # synopsis brackets, alternatives, a table cell's escaped |
        shown = {token.split("=")[0] for token in shlex.split(plain)}
        unknown = sorted(o for o in shown if o.startswith("--") and o not in known and o != "--help")
        if unknown:
            wrong.append(f"{doc}: `{text}`: no option {', '.join(unknown)}")
    assert wrong == []
