"""Install the `prometheus` and `promtool` binaries into a folder, without root and without starting any service.

The observability tests scrape our real metrics endpoints with a real Prometheus and run every dashboard query
against it. Debian's `prometheus` package carries both binaries (statically linked Go programs), so we fetch the
.deb with `apt-get download` (unprivileged, into a temporary folder), unpack it with `dpkg-deb -x` and copy the two
files; nothing is installed system-wide and no unit is started.
Usage: python hack/install_prometheus.py DEST_DIR
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "prometheus"
BINARIES = ("prometheus", "promtool")


def main(dest: Path) -> None:
    if all((dest / name).is_file() for name in BINARIES):
        return
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"install_prometheus: {' and '.join(missing)} not found; this script needs a Debian or Ubuntu machine. "
            f"Elsewhere, download prometheus from https://prometheus.io/download/ and put the `prometheus` and "
            f"`promtool` binaries into {dest}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "-q", PACKAGE], cwd=tmp, check=True)
        deb = next(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        for name in BINARIES:
            target = dest / name
            shutil.copyfile(unpacked / "usr" / "bin" / name, target)
            target.chmod(0o755)
    print(f"installed {' and '.join(BINARIES)} ({deb.name}) into {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin"))
