"""A real Prometheus server for tests: found on PATH or in .tools/bin, run on loopback with its data in a temp folder,
scraping the targets it is given every second, and queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .dashboards import REPO

INSTALL_HINT = "python hack/install_prometheus.py .tools/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tool(name: str) -> Path | None:
    """`prometheus` or `promtool` from PATH, else from the repo's git-ignored .tools/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    local = REPO / ".tools" / "bin" / name
    return local if local.is_file() else None


def scrape_config(targets: dict[str, str]) -> str:
    """A config scraping each `job name -> host:port` every second. `honor_labels` keeps the `job` label our
    training metrics carry (the LLMJob's name) instead of renaming it to `exported_job`, as the chart's PodMonitor
    and ServiceMonitor must too."""
    lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "scrape_configs:"]
    for job, address in targets.items():
        lines += [
            f"  - job_name: {job}",
            "    honor_labels: true",
            "    static_configs:",
            f"      - targets: ['{address}']",
        ]
    return "\n".join(lines) + "\n"


class Prometheus:
    """One prometheus process; `stop()` terminates it (and kills it if it does not exit)."""

    def __init__(self, binary: Path, config: Path, data: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = data.parent / "prometheus.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"prometheus was not ready after {timeout:.0f} s: {self.log.read_text()}")

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path; the decoded JSON answer, errors included (Prometheus answers 400 with a JSON body)."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def values(self, expr: str) -> list[float]:
        return [float(r["value"][1]) for r in self.query(expr)["data"]["result"]]

    def wait_for(self, expr: str, what: str, timeout: float = 20.0) -> None:
        """Wait until an instant query returns at least one series."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.values(expr):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({expr})")

    def wait_for_scrapes_since(self, since: float, scrapes: int = 2, timeout: float = 20.0) -> None:
        """Wait until every target was scraped `scrapes` times after the wall-clock time `since`, so the latest
        values are stored and a rate() over them has two points."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            window = int(time.time() - since)
            if window >= 1 and self.values(f"min(count_over_time(up[{window}s])) >= {scrapes}"):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {scrapes} scrapes of every target")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
