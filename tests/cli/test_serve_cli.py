"""`llmp serve` as a real process (SIGTERM ends it cleanly), `llmp generate` and `llmp chat` on the tiny model, and
the three spellings of MODEL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
import typer
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.cli_serve import resolve_model
from llm_platform.storage import ArtifactStore

from ..observability.prometheus import free_port
from ..services.serving.tiny_model import GREETING, GREETING_ANSWER


def test_llmp_serve_answers_and_stops_on_sigterm(tiny_chat_model):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_platform.cli",
            "serve",
            str(tiny_chat_model),
            "--port",
            str(port),
            "--name",
            "tiny",
        ],
        env={**os.environ, "LLMP_API_KEY": "from-a-secret"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="from-a-secret", max_retries=0)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": GREETING}], temperature=0
        )
        assert answer.choices[0].message.content == GREETING_ANSWER
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells how the process ended
        assert process.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_generate_and_chat_print_the_answer(tiny_chat_model):
    runner = CliRunner()
    chat = runner.invoke(app, ["chat", str(tiny_chat_model), "--temperature", "0"], input=f"{GREETING}\n\n")
    assert chat.exit_code == 0, chat.output
    assert GREETING_ANSWER in chat.output
    generated = runner.invoke(app, ["generate", str(tiny_chat_model), "--prompt", "import", "--max-tokens", "5"])
    assert generated.exit_code == 0, generated.output


def test_model_is_a_folder_or_a_stage_of_a_store(tiny_chat_model, tmp_path):
    assert resolve_model(str(tiny_chat_model)) == tiny_chat_model
    store = ArtifactStore.open(str(tmp_path / "store"))
    with store.writer("sft") as out:
        for file in tiny_chat_model.iterdir():
            (out / "model").mkdir(exist_ok=True)
            (out / "model" / file.name).write_bytes(file.read_bytes())
    assert (resolve_model(str(tmp_path / "store" / "sft")) / "config.json").is_file()
    with pytest.raises(typer.BadParameter, match="not a model folder"):
        resolve_model(str(tmp_path / "store" / "missing"))


def test_a_model_that_cannot_load_ends_llmp_serve_with_the_reason(tiny_chat_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in tiny_chat_model.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    result = CliRunner().invoke(app, ["serve", str(broken), "--port", str(free_port())])
    assert result.exit_code == 1
    assert "the model did not load" in result.output


def test_model_from_an_s3_folder_is_downloaded(tiny_chat_model, s3_bucket, tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("HOME", str(tmp_path))  # the download cache goes under ~/.cache
    s3 = boto3.client("s3")
    for file in tiny_chat_model.iterdir():
        s3.upload_file(str(file), s3_bucket, f"exports/chat/{file.name}")
    folder = resolve_model(f"s3://{s3_bucket}/exports/chat")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_chat_model.iterdir())
    assert (folder / "config.json").read_bytes() == (tiny_chat_model / "config.json").read_bytes()
