"""What finding a store's stages costs `llmp status`: `stored_stages` (the top level, then one request per folder)
against the listing of every key it did before (the baseline), on a local store and on S3 (moto's server on
loopback), both holding a few stages with many checkpoint files each.

    PYTHONPATH=. python bench/status_listing.py --stages 8 --files 2000 --s3-files 1000
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from llm_platform.api.status import PROGRESS_FILE, StageStatus, progress_key
from llm_platform.storage import ArtifactStore
from llm_platform.storage.store import MANIFEST
from llm_platform.trainer.stages.progress import stored_stages


def listing_every_key(store: ArtifactStore) -> list[str]:
    """The baseline: `stored_stages` before, which listed every key of the store to find `<stage>/<mark>`."""
    marks = {MANIFEST, PROGRESS_FILE}
    return sorted(
        {key.split("/")[0] for key in store.backend.list("") if key.count("/") == 1 and key.split("/")[1] in marks}
    )


def fill(store: ArtifactStore, stages: int, files: int, threads: int) -> None:
    """`stages` stages, each with a progress file and `files` small checkpoint files (and their manifests) below."""
    keys = []
    for s in range(stages):
        stage = f"stage-{s}"
        store.write_json(progress_key(stage), StageStatus(phase="Running").model_dump(mode="json"))
        keys += [f"{stage}/checkpoints/step_{i // 50}/node_0/shard-{i % 50}.bin" for i in range(files)]
        keys += [f"{stage}/checkpoints/step_{i}/node_0/{MANIFEST}" for i in range(0, files // 50)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda key: store.backend.put_bytes(key, b"x"), keys))


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def compare(name: str, store: ArtifactStore, keys: int, repeat: int) -> None:
    old_s, old = best_of(repeat, lambda: listing_every_key(store))
    new_s, (new, more) = best_of(repeat, lambda: stored_stages(store))
    assert new == old and not more, (new, old)
    print(
        f"| {name} | {len(new)} | {keys:,} | {old_s * 1e3:,.1f} | {new_s * 1e3:,.1f} | {old_s / new_s:,.1f}x |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=8)
    parser.add_argument("--files", type=int, default=2000, help="checkpoint files per stage, local store")
    parser.add_argument("--s3-files", type=int, default=1000, help="checkpoint files per stage on S3 (moto is slow)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| store | stages | keys | every key (before) ms | top level (now) ms | before / now |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore.open(os.path.join(tmp, "store"))
        fill(store, args.stages, args.files, threads=1)
        compare("local", store, sum(1 for _ in store.backend.list("")), args.repeat)

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
        )
        store = ArtifactStore.open("s3://bench/job")
        store.backend.client.create_bucket(Bucket="bench")
        fill(store, args.stages, args.s3_files, threads=8)
        compare("S3 (moto server, loopback)", store, sum(1 for _ in store.backend.list("")), args.repeat)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
