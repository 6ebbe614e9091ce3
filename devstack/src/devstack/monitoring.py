"""A local Prometheus for `make run MONITORING=1` and the monitoring tests.

The committed `monitoring/prometheus.yml` scrapes compose service names; the local copy
keeps its job names and alert rules but points each job at a process on 127.0.0.1.
Jobs without a local process (the Redis and PostgreSQL exporters) are left out.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from devstack.services import ManagedProcess, ServiceStartError

REPO_ROOT = Path(__file__).resolve().parents[3]
MONITORING_DIR = REPO_ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING_DIR / "prometheus.yml"
RULES_GLOB = str(MONITORING_DIR / "rules" / "*.yml")
DEFAULT_PORT = 9090


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


class LocalPrometheus(ManagedProcess):
    """A Prometheus process for tests, scraping `targets` (job name -> local port)."""

    def __init__(
        self, targets: Mapping[str, int], data_dir: Path, port: int, scrape_interval: str = "1s"
    ) -> None:
        command = local_prometheus_command(
            targets, data_dir, port=port, scrape_interval=scrape_interval
        )
        if command is None:
            raise ServiceStartError("the prometheus binary is not installed")
        self.targets = dict(targets)
        self.port = port
        super().__init__(
            command=command,
            ready_url=f"http://127.0.0.1:{port}/-/ready",
            log_path=data_dir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
