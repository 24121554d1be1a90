"""The init container of a vLLM serving pod: copy the model the `serve` stage serves (the nearest stage before it
that produced one, or spec.model.from) out of the artifact store into a folder vLLM loads from.

    python -m llm_platform.operator.fetch_model --job JOB.yaml --stage serve --storage s3://... --dest /models/model
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from llm_platform.api import SpecError, load_job
from llm_platform.storage import ArtifactStore


def fetch_model(job_file: Path, stage: str, storage: str, dest: Path) -> Path:
    from llm_platform.trainer.stages import make_context

    job = load_job(job_file)
    store = ArtifactStore.open(storage, job.spec.storage.endpoint_url)
    with tempfile.TemporaryDirectory() as scratch:
        source = make_context(job, stage, store, Path(scratch)).input("model")  # verified against its manifest
        # copied beside `dest`, then renamed: a copy cut short (the init container killed) never looks like a model
        partial = dest.with_name(f".{dest.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(partial, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="The LLMJob YAML file.")
    parser.add_argument("--stage", required=True, help="The serve stage.")
    parser.add_argument("--storage", required=True, help="Artifact store URI.")
    parser.add_argument("--dest", type=Path, required=True, help="Folder to copy the model into.")
    args = parser.parse_args(argv)
    try:
        dest = fetch_model(args.job, args.stage, args.storage, args.dest)
    except (SpecError, KeyError, RuntimeError, FileNotFoundError) as e:  # StoreError (corrupt model) included
        print(f"fetch_model: {e}", file=sys.stderr)
        return 2
    print(f"model of stage '{args.stage}' copied to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
