"""A local Prometheus for `make run MONITORING=1` and the monitoring tests.

The committed `monitoring/prometheus.yml` scrapes compose service names; the local copy
keeps its job names and alert rules but points each job at a process on 127.0.0.1.
Jobs without a local process (the Redis and PostgreSQL exporters) are left out.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
MONITORING_DIR = REPO_ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING_DIR / "prometheus.yml"
RULES_GLOB = str(MONITORING_DIR / "rules" / "*.yml")
DEFAULT_PORT = 9090


class PrometheusStartError(RuntimeError):
    """Prometheus exited or never became ready."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def job_names() -> list[str]:
    """The scrape jobs of the committed configuration, in order."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return [job["job_name"] for job in config["scrape_configs"]]


def render_local_config(
    targets: Mapping[str, int], *, scrape_interval: str = "15s"
) -> dict[str, Any]:
    """The committed configuration with job `name` scraping 127.0.0.1:`targets[name]`."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"{PROMETHEUS_CONFIG} has no scrape job named {sorted(unknown)}")
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": scrape_interval,
        "evaluation_interval": scrape_interval,
    }
    config["rule_files"] = [RULES_GLOB]
    config["scrape_configs"] = [
        {
            "job_name": job["job_name"],
            "static_configs": [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}],
        }
        for job in config["scrape_configs"]
        if job["job_name"] in targets
    ]
    return config


def write_local_config(
    path: Path, targets: Mapping[str, int], *, scrape_interval: str = "15s"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = render_local_config(targets, scrape_interval=scrape_interval)
    path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    return path


def local_prometheus_command(
    targets: Mapping[str, int],
    data_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    scrape_interval: str = "15s",
) -> list[str] | None:
    """argv of a Prometheus on 127.0.0.1:`port` scraping `targets` (job name -> local port),
    its configuration and data under `data_dir`; None when the binary is not installed."""
    binary = prometheus_binary()
    if binary is None:
        return None
    config = write_local_config(
        data_dir / "prometheus.yml", targets, scrape_interval=scrape_interval
    )
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]


@dataclass
class LocalPrometheus:
    """A Prometheus process for tests: started, waited for, and stopped by its pid."""

    targets: Mapping[str, int]
    data_dir: Path
    port: int
    scrape_interval: str = "1s"
    startup_timeout_s: float = 30.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    def start(self) -> None:
        command = local_prometheus_command(
            self.targets, self.data_dir, port=self.port, scrape_interval=self.scrape_interval
        )
        if command is None:
            raise PrometheusStartError("the prometheus binary is not installed")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusStartError(f"prometheus exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusStartError(f"prometheus did not become ready:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
