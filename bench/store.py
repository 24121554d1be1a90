"""What verifying artifacts on read costs: `ArtifactStore.fetch` of a committed local artifact against the read a
consumer does anyway (every byte once, the baseline), cold (every file hashed) and warm (files unchanged since their
last check are not hashed again), plus the size-only check `is_up_to_date` does on S3.

    PYTHONPATH=. python bench/store.py --mb 512 --files 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from llm_platform.storage import ArtifactStore


def read_all(folder: Path) -> int:
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="total artifact size in MiB")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["LLMP_CACHE"] = str(root / "cache")
        out = root / "out"
        out.mkdir()
        for i in range(args.files):
            (out / f"model-{i}.safetensors").write_bytes(os.urandom(args.mb * (1 << 20) // args.files))
        store = ArtifactStore.open(str(root / "store"))
        store.commit("pretrain", out)
        shutil.rmtree(out)
        folder = store.fetch("pretrain")

        def cold() -> None:
            shutil.rmtree(root / "cache" / "verified", ignore_errors=True)
            store.fetch("pretrain")

        read_s = best_of(args.repeat, lambda: read_all(folder))
        cold_s = best_of(args.repeat, cold)
        warm_s = best_of(args.repeat, lambda: store.fetch("pretrain"))
        sizes_s = best_of(args.repeat, lambda: store.verify("pretrain", content=False))
    print(f"artifact: {args.mb} MiB in {args.files} files, page cache warm, best of {args.repeat}")
    print(f"{'baseline: read every byte once':44s} {read_s * 1e3:9.1f} ms")
    print(f"{'fetch, cold (sha256 of every file)':44s} {cold_s * 1e3:9.1f} ms  x{cold_s / read_s:.2f} of baseline")
    print(f"{'fetch, warm (unchanged files not re-hashed)':44s} {warm_s * 1e3:9.1f} ms  x{warm_s / read_s:.4f}")
    print(f"{'sizes only (is_up_to_date on S3)':44s} {sizes_s * 1e3:9.1f} ms  x{sizes_s / read_s:.4f}")


if __name__ == "__main__":
    main()
