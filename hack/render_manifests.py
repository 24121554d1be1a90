"""Render the plain manifests under manifests/ from the Helm chart, so `kubectl apply` users and `helm install` users
get the same objects from one source.

`helm template` with the chart's defaults (release `llm-platform` in namespace `llm-platform`, monitoring objects and
the jobs API switched on) is split by template: the operator's objects go to manifests/operator/, the
Prometheus-operator objects and dashboards to manifests/monitoring/ (apply those only where the monitoring.coreos.com
CRDs exist), the jobs API to manifests/api/. CRDs are not rendered here: manifests/crds/ is their source and the chart
links to it.

Usage: python hack/render_manifests.py [--out ROOT] [--helm PATH]   (ROOT defaults to the repo's manifests/)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "llm-platform"
RELEASE = NAMESPACE = "llm-platform"
# the folder under manifests/ of each template's objects; every other template's go to operator/
FOLDERS = {
    "servicemonitor.yaml": "monitoring",
    "podmonitor.yaml": "monitoring",
    "dashboards.yaml": "monitoring",
    "api.yaml": "api",
}
HEADER = "# Generated from helm/llm-platform by hack/render_manifests.py (make manifests); do not edit.\n"
SOURCE = re.compile(r"^# Source: llm-platform/templates/(\S+)\n", re.MULTILINE)


def helm_template(helm: str) -> str:
    command = [
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
        "--set", "api.enabled=true",
    ]  # fmt: skip
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def split_by_template(rendered: str) -> dict[str, str]:
    """{template file name: its documents}, in the order helm printed them. Pure."""
    files: dict[str, list[str]] = {}
    parts = SOURCE.split(rendered)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        files.setdefault(name, []).append(body.strip().removesuffix("---").strip() + "\n")
    return {name: HEADER + "---\n".join(docs) for name, docs in files.items()}


def write(files: dict[str, str], root: Path) -> list[Path]:
    written = []
    for name, text in files.items():
        path = root / FOLDERS.get(name, "operator") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "manifests")
    parser.add_argument("--helm", default=shutil.which("helm") or str(REPO / ".tools" / "bin" / "helm"))
    args = parser.parse_args()
    for path in write(split_by_template(helm_template(args.helm)), args.out):
        print(path)


if __name__ == "__main__":
    main()
